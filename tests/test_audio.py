"""Audio decoding: every common format decodes to 16 kHz mono float32 of the right length and pitch; junk is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.audio import load_audio, resample
from core.errors import InputError

TONE_HZ = 440.0
TONE_S = 1.5

# (extension, encoder, sample rate): each made with PyAV's bundled FFmpeg encoders, as browsers and phones send them.
FORMATS = [
    ("wav", "pcm_s16le", 44100),
    ("mp3", "libmp3lame", 44100),
    ("ogg", "vorbis", 44100),
    ("webm", "libopus", 48000),
    ("flac", "flac", 22050),
    ("m4a", "aac", 44100),
]


def write_tone(path: Path, codec: str, rate: int, seconds: float = TONE_S) -> Path:
    """Encode a stereo 440 Hz tone with PyAV."""
    import av

    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options={"strict": "experimental"})
        stream.layout = "stereo"
        fmt = stream.codec_context.codec.audio_formats[0].name
        converter = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
        for start in range(0, tone.size, 1024):
            block = np.ascontiguousarray(np.tile(tone[start : start + 1024], (2, 1)))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = rate
            for converted in converter.resample(frame):
                container.mux(stream.encode(converted))
        for converted in converter.resample(None):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return path


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spectrum) * rate / audio.size)


@pytest.mark.parametrize(("ext", "codec", "rate"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_decodes_to_16k_mono_with_the_right_duration_and_pitch(tmp_path, ext, codec, rate):
    path = write_tone(tmp_path / f"tone.{ext}", codec, rate)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Lossy codecs add a few ms of priming or padding; the length must still be the tone's.
    assert abs(audio.size / 16000 - TONE_S) < 0.05
    assert abs(dominant_hz(audio, 16000) - TONE_HZ) < 2.0
    assert 0.2 < np.abs(audio).max() <= 1.0


def test_bytes_decode_like_the_file(tmp_path):
    path = write_tone(tmp_path / "tone.webm", "libopus", 48000)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), load_audio(str(path)))


def test_other_rates_are_honoured(tmp_path):
    audio = load_audio(write_tone(tmp_path / "tone.flac", "flac", 44100), 22050)
    assert abs(audio.size / 22050 - TONE_S) < 0.01
    assert abs(dominant_hz(audio, 22050) - TONE_HZ) < 2.0


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"this is a text file, not audio\n" * 20, "not audio I can read"), (b"", "it is empty")],
    ids=["text-renamed-wav", "empty"],
)
def test_non_audio_is_refused_with_a_clear_message(tmp_path, content, reason):
    path = tmp_path / "speech.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        load_audio(path)
    assert "not audio I can read" in info.value.user_message()


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_audio(tmp_path / "gone.wav")


def test_decoding_stops_at_max_s(tmp_path):
    path = write_tone(tmp_path / "tone.wav", "pcm_s16le", 16000)
    with pytest.raises(InputError, match="longer than 1 seconds"):
        load_audio(path, max_s=1.0)
    assert load_audio(path, max_s=2.0).size == int(TONE_S * 16000)


def test_resample_keeps_length_and_pitch():
    rate = 22050
    tone = np.sin(2 * np.pi * TONE_HZ * np.arange(rate) / rate).astype(np.float32)
    out = resample(tone, rate, 16000)
    assert out.dtype == np.float32 and out.size == 16000
    assert abs(dominant_hz(out, 16000) - TONE_HZ) < 2.0
    assert resample(tone, rate, rate) is tone
