"""Exception types raised at stage boundaries; the UI turns them into user-facing messages in one place."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    def user_message(self) -> str:
        """Return the text shown to the user in the chat and returned by the API."""
        return str(self)


class ConfigError(PipelineError):
    """Configuration names something that does not exist or cannot work together."""


class InputError(PipelineError):
    """The user's input cannot be used (empty, too long, not audio, silent...)."""


class BackendError(PipelineError):
    """A stage's backend failed.

    Attributes:
        stage: the pipeline stage ("llm", "tts", "asr", ...).
        backend: the backend's registry name.
        retryable: whether the same call may succeed later (timeouts, 429, 5xx).
    """

    def __init__(self, stage: str, backend: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.stage = stage
        self.backend = backend
        self.retryable = retryable

    def user_message(self) -> str:
        return f"{self.stage.upper()} ({self.backend}) failed: {self}"


class ModelNotFoundError(BackendError):
    """A backend's model weights could not be found; the message says what is missing and how to get it."""

    def user_message(self) -> str:
        return f"{self.stage.upper()} ({self.backend}): model not available. {self}"


class TurnCancelled(PipelineError):
    """The turn was cancelled (a barge-in, a newer question) before its reply was complete."""


class BusyError(PipelineError):
    """A session asked for another turn while its limit of turns in flight was reached (``core.turn_policy``)."""
