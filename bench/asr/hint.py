"""Benchmark the speech hint: word error rate of knowledge-base questions with and without the headings prompt.

Each labelled question set's questions are spoken by espeak-ng and by Festival, transcribed by whisper.cpp tiny.en
once with no prompt and once with ``core.asr.hint.speech_hint`` of its own knowledge base, and scored against the
written question (``core.asr.wer``). The general sentences of ``data/asr/sentences.txt`` are scored with the
demo knowledge base's hint, to show what the hint costs a question about something else. Results go to
``bench/asr/hint.md``. Run from the repository root: ``python bench/asr/hint.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.asr import SAMPLE_RATE, ASRBackend, create_asr  # noqa: E402 - after the path setup
from core.asr.hint import speech_hint  # noqa: E402
from core.asr.wer import word_errors  # noqa: E402
from core.audio import load_audio  # noqa: E402
from core.config import DATA_DIR, load_config
from core.errors import InputError  # noqa: E402
from core.retrieval.documents import list_documents, read_document  # noqa: E402

RESULTS = Path(__file__).with_name("hint.md")
TRANSCRIPTS = Path(__file__).with_name("hint_transcripts.jsonl")
SETS = {  # name: (knowledge base, questions file or sentences file, tuned on?)
    "tuning": (ROOT / "knowledge_base", DATA_DIR / "llm_grounding_eval.jsonl", True),
    "held-out": (DATA_DIR / "llm_eval" / "heldout_kb", DATA_DIR / "llm_eval" / "heldout_questions.jsonl", False),
    "fresh": (DATA_DIR / "llm_eval_fresh" / "kb", DATA_DIR / "llm_eval_fresh" / "questions.jsonl", False),
    "fresh2": (DATA_DIR / "llm_eval_fresh2" / "kb", DATA_DIR / "llm_eval_fresh2" / "questions.jsonl", False),
    "fresh3": (DATA_DIR / "llm_eval_fresh3" / "kb", DATA_DIR / "llm_eval_fresh3" / "questions.jsonl", False),
    "general": (ROOT / "knowledge_base", DATA_DIR / "asr" / "sentences.txt", False),
}
NO_FILE_LIMIT = 1 << 40
VOICES = ("espeak-ng", "festival")


def titles_of(kb: Path) -> list[str]:
    """Every section title of the knowledge-base folder, as the index would title its chunks."""
    titles = []
    for path, source in list_documents(kb):
        read = read_document(path, source, NO_FILE_LIMIT)
        titles.extend(section.title for section in getattr(read, "sections", ()))
    return titles


def questions_of(path: Path) -> list[str]:
    if path.suffix == ".jsonl":
        return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def speak(voice: str, text: str, folder: Path) -> Path:
    """A WAV of ``text`` in ``voice`` (espeak-ng US English at 150 words a minute, or Festival's default)."""
    wav = folder / f"{voice}.wav"
    if voice == "espeak-ng":
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    else:
        subprocess.run(["text2wave", "-o", str(wav)], input=text.encode(), check=True, capture_output=True)
    return wav


def run_set(asr: ASRBackend, name: str, max_words: int, folder: Path, transcripts: list[dict]) -> dict:
    kb, questions_file, _ = SETS[name]
    hint = speech_hint(titles_of(kb), max_words)
    questions = questions_of(questions_file)
    errors = {(voice, label): 0 for voice in VOICES for label in ("none", "hint")}
    seconds = {label: [] for label in ("none", "hint")}
    empty = {label: 0 for label in ("none", "hint")}
    words = 0
    changed: list[str] = []
    for question in questions:
        words_here = 0
        for voice in VOICES:
            audio = load_audio(speak(voice, question, folder), SAMPLE_RATE)
            heard = {}
            for label, prompt in (("none", ""), ("hint", hint)):
                started = time.perf_counter()
                try:
                    heard[label] = asr.transcribe(audio, hint=prompt).text
                except InputError:  # nothing recognised: every word of the question is missed
                    heard[label] = ""
                    empty[label] += 1
                seconds[label].append(time.perf_counter() - started)
                transcripts.append({"set": name, "voice": voice, "prompt": label, "question": question,
                                    "heard": heard[label]})
                wrong, words_here = word_errors(question, heard[label])
                errors[(voice, label)] += wrong
            if heard["none"] != heard["hint"] and len(changed) < 12:
                changed.append(f"{voice}: {question!r}: {heard['none']!r} → {heard['hint']!r}")
        words += words_here
    return {"questions": len(questions), "words": words, "hint": hint,
            "wer": {f"{voice} {label}": errors[(voice, label)] / words for voice, label in errors},
            "median_s": {label: statistics.median(times) for label, times in seconds.items()}, "empty": empty,
            "changed": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-words", type=int, default=load_config().asr.hint_words)
    parser.add_argument("--sets", nargs="+", default=[name for name, (_, f, _) in SETS.items() if f.exists()])
    args = parser.parse_args()
    asr = create_asr(load_config())
    results = {}
    transcripts: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            results[name] = run_set(asr, name, args.max_words, Path(tmp), transcripts)
            print(name, json.dumps(results[name]["wer"]), flush=True)
    lines = [
        "# Speech hint benchmark (whisper.cpp tiny.en, knowledge-base headings as the initial prompt)",
        "",
        f"Hint budget {args.max_words} words; load average {os.getloadavg()[0]:.1f} at the end; one run. Word error "
        "rate over all words of each set's questions, spoken by espeak-ng (US English, 150 wpm) and Festival "
        "(its default voice). `general` is data/asr/sentences.txt (not about any knowledge base) with the demo "
        "knowledge base's hint. Only `tuning` was looked at while choosing how the hint is built.",
        "",
        "| set | questions | words | espeak-ng, no hint | espeak-ng, hint | Festival, no hint | Festival, hint "
        "| median s, no hint | median s, hint | nothing heard, no hint / hint |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        wer = r["wer"]
        lines.append(
            f"| {name} | {r['questions']} | {r['words']} | {wer['espeak-ng none']:.1%} | {wer['espeak-ng hint']:.1%} "
            f"| {wer['festival none']:.1%} | {wer['festival hint']:.1%} | {r['median_s']['none']:.2f} "
            f"| {r['median_s']['hint']:.2f} | {r['empty']['none']} / {r['empty']['hint']} |")
    lines += ["", "Transcripts the hint changed (up to 12 a set):", ""]
    for name, r in results.items():
        lines += [f"- **{name}** (hint: {r['hint']!r})", *(f"  - {c}" for c in r["changed"])]
    RESULTS.write_text("\n".join(lines) + "\n")
    TRANSCRIPTS.write_text("".join(json.dumps(t) + "\n" for t in transcripts))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
