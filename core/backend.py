"""What every stage backend shares: a registry lookup, a status line for the UI, and error wrapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from core.errors import BackendError, ConfigError, PipelineError

B = TypeVar("B")


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """What the status panel shows for one stage: the backend in use and why a preferred one is not."""

    stage: str
    description: str
    note: str = ""

    def line(self) -> str:
        """One human-readable line, e.g. ``LLM: local SmolLM2-135M (Databricks: no credentials)``."""
        text = f"{self.stage}: {self.description}"
        return f"{text} ({self.note})" if self.note else text


class StageBackend:
    """Base of every stage backend: a registry name, a human description, and the note from its selection.

    Subclasses set ``stage`` (e.g. "TTS") and ``name`` (the registry key) and override ``description``.
    Factories set ``note`` when a preferred backend was passed over, e.g. "Databricks: no credentials".
    """

    stage: ClassVar[str] = ""
    name: ClassVar[str] = ""
    note: str = ""

    @property
    def description(self) -> str:
        """Human-readable backend and model, e.g. "Piper joe-medium"."""
        return self.name

    def status(self) -> BackendStatus:
        """The status panel line for this backend."""
        return BackendStatus(self.stage, self.description, self.note)


def pick_backend(stage: str, registry: Mapping[str, type[B]], name: str) -> type[B]:
    """Return the backend class registered as ``name``, or raise ConfigError listing the valid names."""
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise ConfigError(f"Unknown {stage} backend {name!r}; choose one of: {valid}") from None


@contextmanager
def backend_errors(stage: str, backend: str, *, retryable: bool = False) -> Iterator[None]:
    """Let pipeline errors through and turn any other exception from a backend library into a BackendError."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:  # noqa: BLE001 - the stage boundary: library errors become typed errors here
        raise BackendError(stage, backend, f"{type(exc).__name__}: {exc}", retryable=retryable) from exc
