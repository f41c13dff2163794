"""Audio input: decode any common format (wav, mp3, ogg, webm/opus, flac, m4a) to mono float32 at a chosen rate.

Decoding uses PyAV (FFmpeg bundled in its wheel); resampling uses scipy's polyphase filter.
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from core.errors import InputError

log = logging.getLogger(__name__)

AudioSource = str | Path | bytes
"""A file path, or the bytes of a whole audio file (e.g. an upload or a browser recording)."""


def _not_audio(reason: str) -> InputError:
    return InputError(f"That file is not audio I can read ({reason}). Please send a WAV, MP3, OGG, WebM or FLAC file.")


def resample(audio: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    """Resample mono audio with a polyphase anti-aliasing filter; returns float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if from_sr <= 0 or to_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {from_sr} → {to_sr}")
    if from_sr == to_sr or audio.size == 0:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(to_sr, from_sr)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def _decode_mono(source: AudioSource, max_s: float | None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to mono float32 at its own rate; stop early past ``max_s`` seconds."""
    import av

    if isinstance(source, bytes):
        if not source:
            raise _not_audio("it is empty")
        opened: str | io.BytesIO = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise _not_audio(f"no such file: {path.name}")
        if path.stat().st_size == 0:
            raise _not_audio("it is empty")
        opened = str(path)

    try:
        with av.open(opened, mode="r") as container:
            if not container.streams.audio:
                raise _not_audio("it has no audio track")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks: list[np.ndarray] = []
            n_samples = 0
            limit = None if max_s is None else int(max_s * rate) + 1
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    n_samples += chunk.size
                if limit is not None and n_samples > limit:
                    raise InputError(f"That recording is longer than {max_s:g} seconds. Please keep it shorter.")
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise _not_audio(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
    if not chunks or sum(c.size for c in chunks) == 0:
        raise _not_audio("it contains no audio samples")
    return np.concatenate(chunks).astype(np.float32, copy=False), rate


def load_audio(source: AudioSource, sample_rate: int = 16000, *, max_s: float | None = None) -> np.ndarray:
    """Decode an audio file (path or bytes) of any common format to mono float32 at ``sample_rate``.

    Args:
        source: a file path, or the bytes of a whole file.
        sample_rate: the output rate in Hz.
        max_s: if given, stop decoding and raise InputError once the audio is longer than this.

    Raises:
        InputError: the file is missing, empty, not audio, corrupt, or longer than ``max_s``.
    """
    audio, rate = _decode_mono(source, max_s)
    out = resample(audio, rate, sample_rate)
    log.debug("Decoded %.2f s of audio at %d Hz → %d Hz", audio.size / rate, rate, sample_rate)
    return np.clip(out, -1.0, 1.0)
