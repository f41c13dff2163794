"""Model resolution: an explicit path, then a model shipped in a Python package, then the Hugging Face hub."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model was found: ``source`` is "explicit", "package:<name>" or "hub:<repo>"."""

    path: Path
    source: str


def package_dir(package: str) -> Path | None:
    """Return the folder of an installed package without importing it (some model packages fail on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_in_package(package: str, pattern: str) -> Path | None:
    """Return the first file under an installed package matching a glob pattern, or None."""
    root = package_dir(package)
    if root is None:
        return None
    return next(iter(sorted(root.rglob(pattern))), None)


def _from_hub(repo: str, filename: str | None) -> Path:
    """Fetch from the hub cache first, then from the network; raises whatever huggingface_hub raises."""
    from huggingface_hub import hf_hub_download, snapshot_download

    def fetch(local_only: bool) -> Path:
        if filename:
            return Path(hf_hub_download(repo, filename, local_files_only=local_only))
        return Path(snapshot_download(repo, local_files_only=local_only))

    try:
        return fetch(local_only=True)
    except Exception:  # noqa: BLE001 - a cache miss is expected; the network attempt reports the real error
        return fetch(local_only=False)


def resolve_model(
    *,
    stage: str,
    backend: str,
    what: str,
    explicit: str = "",
    packaged: Callable[[], Path | None] | None = None,
    package_name: str = "",
    hub_repo: str = "",
    hub_filename: str | None = None,
) -> ResolvedModel:
    """Find a model, trying an explicit path, then a packaged copy, then the hub; say which, or why none.

    Raises:
        ModelNotFoundError: naming every place tried and what to install or set.
    """
    tried: list[str] = []
    if explicit:
        path = Path(explicit).expanduser()
        if path.exists():
            return ResolvedModel(path, "explicit")
        raise ModelNotFoundError(stage, backend, f"{what}: the configured path {path} does not exist.")
    if packaged is not None:
        path = packaged()
        if path is not None and path.exists():
            return ResolvedModel(path, f"package:{package_name}")
        tried.append(f"package {package_name!r} is not installed (pip install {package_name})")
    if hub_repo:
        try:
            path = _from_hub(hub_repo, hub_filename)
            return ResolvedModel(path, f"hub:{hub_repo}")
        except Exception as exc:  # noqa: BLE001 - any hub failure means "not available"; the reason is reported
            log.info("hub download of %s failed: %s", hub_repo, exc)
            tried.append(f"hub {hub_repo} is not cached here and could not be downloaded ({type(exc).__name__})")
    raise ModelNotFoundError(stage, backend, f"{what} not found: " + "; ".join(tried) + ".")
