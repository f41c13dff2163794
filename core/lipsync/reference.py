"""Reference speech: audio together with the synthesiser's own phoneme timings, the ground truth that the lip-sync
benchmark, its training script and the tests score every timing source against. Three synthesisers give them:

- Piper (``piper_reference_speech``): per-code-point IPA alignments of a loaded ``PiperVoice``.
- Festival (``festival_reference_speech``): the utterance's Segment relation (radio phone set, ARPAbet-like),
  written next to the wave by Festival itself; Debian's voices kal_diphone, ked_diphone, cmu_us_slt_arctic_hts.
- espeak-ng (``espeak_reference_speech``): phoneme events (IPA) from libespeak-ng's synchronous synthesis.

Each returns a ``Speech`` whose ``phonemes`` are exactly what the synthesiser used to make the sound.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelNotFoundError
from core.types import PhonemeTiming, Speech

FESTIVAL_SCRIPT = """(voice_{voice})
(set! utt (SynthText "{text}"))
(utt.save.wave utt "{wav}" 'riff)
(utt.save.segs utt "{segs}")
"""
FESTIVAL_TIMEOUT_S = 60.0
ESPEAK_LIBRARY = "libespeak-ng.so.1"
ESPEAK_BUFFER_MS = 200
"""Audio handed to the synthesis callback at a time (events arrive with each piece)."""
ESPEAK_DEFAULT_WPM = 175
ESPEAK_DEFAULT_PITCH = 50
"""espeak-ng's own defaults (words per minute; pitch 0-100)."""
# Values from espeak-ng's speak_lib.h.
_ESPEAK_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_PHONEME_EVENTS = 0x0001
_ESPEAK_PHONEME_IPA = 0x0002
_ESPEAK_EVENT_PHONEME = 7
_ESPEAK_EVENT_END = 0
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3


def piper_reference_speech(voice: Any, text: str, syn_config: Any = None) -> Speech:
    """Speak ``text`` with a loaded ``piper.PiperVoice`` and keep its raw per-code-point alignments as IPA timings.

    The voice must be loaded with ``include_alignments=True``. ``syn_config``: a ``piper.SynthesisConfig`` (None:
    the voice's own, whose duration noise makes every run's timings slightly different).
    """
    phonemes, audio, t = [], [], 0.0
    for chunk in voice.synthesize(text, syn_config=syn_config, include_alignments=True):
        for item in chunk.phoneme_alignments:
            step = item.num_samples / chunk.sample_rate
            phonemes.append(PhonemeTiming(item.phoneme, t, t + step))
            t += step
        audio.append(chunk.audio_float_array)
    return Speech(text, np.concatenate(audio), voice.config.sample_rate, tuple(phonemes), backend="piper")


def festival_reference_speech(voice: str, text: str) -> Speech:
    """Speak ``text`` with Festival's ``voice`` (e.g. "kal_diphone") and keep its segment timings (ARPAbet).

    Raises:
        ModelNotFoundError: Festival is not installed, or the voice is not.
    """
    import soundfile as sf

    if shutil.which("festival") is None:
        raise ModelNotFoundError("lipsync", "festival", "festival is not installed (Debian package 'festival')")
    with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
        wav, segs = Path(tmp) / "speech.wav", Path(tmp) / "speech.segs"
        quoted = text.replace("\\", " ").replace('"', " ")
        script = Path(tmp) / "speak.scm"
        script.write_text(FESTIVAL_SCRIPT.format(voice=voice, text=quoted, wav=wav, segs=segs), encoding="utf-8")
        done = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True,
                              timeout=FESTIVAL_TIMEOUT_S, check=False)
        if not wav.is_file() or not segs.is_file():
            raise ModelNotFoundError("lipsync", "festival",
                                     f"Festival voice {voice!r} did not speak: {done.stderr.strip()[-200:]}")
        audio, rate = sf.read(str(wav), dtype="float32")
        phonemes = read_festival_segments(segs.read_text(encoding="utf-8"))
    return Speech(text, audio, int(rate), tuple(phonemes), backend=f"festival:{voice}")


def read_festival_segments(document: str) -> list[PhonemeTiming]:
    """Festival's ``utt.save.segs`` file (after a ``#`` line, one ``end_time colour phone`` line per segment)."""
    body = document.split("#", 1)[1] if "#" in document else document
    phonemes, start = [], 0.0
    for line in body.splitlines():
        fields = line.split()
        if len(fields) == 3:
            end = float(fields[0])
            phonemes.append(PhonemeTiming(fields[2], start, end, "arpabet"))
            start = end
    return phonemes


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_EspeakEvent))
_ESPEAK_LOCK = threading.Lock()


@cache
def _espeak() -> tuple[ctypes.CDLL, int]:
    """libespeak-ng, initialised once for synchronous synthesis with IPA phoneme events, and its sample rate."""
    try:
        library = ctypes.CDLL(ESPEAK_LIBRARY)
    except OSError as exc:
        raise ModelNotFoundError("lipsync", "espeak-ng", f"{ESPEAK_LIBRARY} not found (Debian 'espeak-ng')") from exc
    rate = library.espeak_Initialize(_ESPEAK_OUTPUT_SYNCHRONOUS, ESPEAK_BUFFER_MS, None,
                                     _ESPEAK_PHONEME_EVENTS | _ESPEAK_PHONEME_IPA)
    if rate <= 0:
        raise ModelNotFoundError("lipsync", "espeak-ng", "espeak_Initialize failed (no espeak-ng-data?)")
    return library, rate


def espeak_reference_speech(voice: str, text: str, words_per_minute: int = ESPEAK_DEFAULT_WPM,
                            pitch: int = ESPEAK_DEFAULT_PITCH) -> Speech:
    """Speak ``text`` with espeak-ng's ``voice`` (e.g. "en-us+f2") and keep its phoneme events as IPA timings.

    Raises:
        ModelNotFoundError: libespeak-ng is missing or does not know the voice.
    """
    library, rate = _espeak()
    chunks: list[np.ndarray] = []
    starts: list[tuple[int, str]] = []

    def on_audio(wav, count, events) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        k = 0
        while events[k].type != _ESPEAK_EVENT_END:
            event = events[k]
            if event.type == _ESPEAK_EVENT_PHONEME:
                starts.append((event.sample, event.id.decode("utf-8", errors="ignore")))
            k += 1
        return 0

    callback = _CALLBACK(on_audio)
    encoded = text.encode("utf-8")
    with _ESPEAK_LOCK:
        library.espeak_SetSynthCallback(callback)
        if library.espeak_SetVoiceByName(voice.encode("utf-8")) != 0:
            raise ModelNotFoundError("lipsync", "espeak-ng", f"espeak-ng has no voice {voice!r}")
        library.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        library.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        library.espeak_Synth(encoded, len(encoded) + 1, 0, _ESPEAK_POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        library.espeak_Synchronize()
    audio = (np.concatenate(chunks) if chunks else np.zeros(1, np.int16)).astype(np.float32) / 32768.0
    phonemes = []
    for k, (sample, symbol) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(audio)
        if symbol and end > sample:
            phonemes.append(PhonemeTiming(symbol, sample / rate, min(end, len(audio)) / rate))
    return Speech(text, audio, rate, tuple(phonemes), backend=f"espeak:{voice}")
