"""Answer-quality benchmark: key facts, invented facts and persona rules, per local model, through the real pipeline.

Every question is a whole turn (retrieval, guard, LLM, TTS) with no history unless the scripted turn has one, and
the response cache off. Two knowledge bases: the project's own (``knowledge_base/``: the tuning set
``data/llm_grounding_eval.jsonl`` and ``data/llm_persona_dev.jsonl``, which prompts were tuned on), the held-out
Saltmere Ferries one (``data/llm_eval/``: questions and persona turns never used for tuning) and the fresh
held-out Kestrel Valley Makerspace one (``data/llm_eval_fresh/``, written after the others by someone who had seen
neither; its failures have since been read) and the second fresh one, Harrowgate Lane Veterinary Clinic
(``data/llm_eval_fresh2/``, written later still; its failures have since been read) and the third, the Kestrel
Picturehouse cinema (``data/llm_eval_fresh3/``, written 2026-12-06; its failures were read on 2026-12-07) and the
fourth, fifth and sixth, Fernbrook Lido & Leisure Centre, Brackenridge Community Library and Whinmoor Lane City
Farm (``data/llm_eval_fresh4/``, ``data/llm_eval_fresh5/``, ``data/llm_eval_fresh6/``, written 2026-12-07, not
looked at by whoever tunes). Writes
``bench/llm_quality/results.md`` and every answer to ``bench/llm_quality/answers.jsonl``.

Run: ``python bench/llm_quality/run.py [--models qwen2.5-coder-1.5b smollm2-135m] [--limit N] [--sets tuning]
[--output DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.config import DATA_DIR, AppConfig, load_config  # noqa: E402
from core.llm.evaluation import (  # noqa: E402
    GroundingCase,
    PersonaTurn,
    Tally,
    load_cases,
    load_turns,
    score_case,
)
from core.llm.packaged import local_model  # noqa: E402
from core.persona import default_persona  # noqa: E402
from core.pipeline import Pipeline  # noqa: E402
from core.types import ChatMessage, TurnComplete  # noqa: E402

HERE = Path(__file__).resolve().parent
KBS = {"demo": ROOT / "knowledge_base", "heldout": DATA_DIR / "llm_eval" / "heldout_kb",
       "fresh": DATA_DIR / "llm_eval_fresh" / "kb", "fresh2": DATA_DIR / "llm_eval_fresh2" / "kb",
       "fresh3": DATA_DIR / "llm_eval_fresh3" / "kb", "fresh4": DATA_DIR / "llm_eval_fresh4" / "kb",
       "fresh5": DATA_DIR / "llm_eval_fresh5" / "kb", "fresh6": DATA_DIR / "llm_eval_fresh6" / "kb"}
GROUNDING_SETS = {  # name: (knowledge base, file, tuned on?, facts match word beginnings?)
    "tuning": ("demo", DATA_DIR / "llm_grounding_eval.jsonl", True, True),
    "held-out": ("heldout", DATA_DIR / "llm_eval" / "heldout_questions.jsonl", False, False),
    "fresh": ("fresh", DATA_DIR / "llm_eval_fresh" / "questions.jsonl", False, False),
    "fresh2": ("fresh2", DATA_DIR / "llm_eval_fresh2" / "questions.jsonl", False, False),
    "fresh3": ("fresh3", DATA_DIR / "llm_eval_fresh3" / "questions.jsonl", False, False),
    "fresh4": ("fresh4", DATA_DIR / "llm_eval_fresh4" / "questions.jsonl", False, False),
    "fresh5": ("fresh5", DATA_DIR / "llm_eval_fresh5" / "questions.jsonl", False, False),
    "fresh6": ("fresh6", DATA_DIR / "llm_eval_fresh6" / "questions.jsonl", False, False),
}
PERSONA_SETS = {"tuning": (DATA_DIR / "llm_persona_dev.jsonl", True),
                "held-out": (DATA_DIR / "llm_eval" / "persona_turns.jsonl", False),
                "fresh": (DATA_DIR / "llm_eval_fresh" / "persona_turns.jsonl", False),
                "fresh2": (DATA_DIR / "llm_eval_fresh2" / "persona_turns.jsonl", False),
                "fresh3": (DATA_DIR / "llm_eval_fresh3" / "persona_turns.jsonl", False),
                "fresh4": (DATA_DIR / "llm_eval_fresh4" / "persona_turns.jsonl", False),
                "fresh5": (DATA_DIR / "llm_eval_fresh5" / "persona_turns.jsonl", False),
                "fresh6": (DATA_DIR / "llm_eval_fresh6" / "persona_turns.jsonl", False)}
DEFAULT_MODELS = ("qwen2.5-coder-1.5b", "smollm2-135m")


@dataclass
class Answer:
    """One turn's outcome, as written to answers.jsonl."""

    model: str
    set: str
    id: str
    question: str
    answer: str
    first_audio_s: float
    verdict: str


def documents_text(kb: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(kb.glob("*.md")))


def ask(pipeline: Pipeline, question: str, history: tuple[tuple[str, str], ...] = ()) -> TurnComplete:
    messages = [ChatMessage(role, text) for user, assistant in history
                for role, text in (("user", user), ("assistant", assistant))]
    done = list(pipeline.run_turn(messages, text=question, session_id="bench-quality"))[-1]
    if not isinstance(done, TurnComplete):
        raise RuntimeError(f"turn did not complete: {done!r}")
    return done


def pipeline_for(base: AppConfig, model: str, kb: str, work: Path) -> Pipeline:
    llm = replace(base.llm, local_model=model)
    retrieval = replace(base.retrieval, kb_dir=KBS[kb])
    pipeline = Pipeline(replace(base, llm=llm, retrieval=retrieval, response_cache=False,
                                cache_dir=work / f"{model}-{kb}"))
    pipeline.warm_up()
    pipeline.prepared.wait()
    return pipeline


class Pipelines(dict):
    """One pipeline per knowledge base, made when a set first needs it (each prepares its documents)."""

    def __init__(self, base: AppConfig, model: str, work: Path) -> None:
        super().__init__()
        self.base, self.model, self.work = base, model, work

    def __missing__(self, kb: str) -> Pipeline:
        self[kb] = pipeline_for(self.base, self.model, kb, self.work)
        return self[kb]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases of each set (a quick look)")
    parser.add_argument("--sets", nargs="+", choices=list(GROUNDING_SETS), default=list(GROUNDING_SETS),
                        help="which sets to run (while tuning, run only 'tuning')")
    parser.add_argument("--parts", nargs="+", choices=("grounding", "persona"), default=["grounding", "persona"],
                        help="grounded questions, scripted persona turns, or both")
    parser.add_argument("--output", type=Path, default=HERE, help="folder for results.md and answers.jsonl")
    args = parser.parse_args()
    base = load_config({k: v for k, v in os.environ.items() if not k.startswith(("AVATAR_", "DATABRICKS_", "OPENAI_"))})
    base = replace(base, llm=replace(base.llm, backend="local"))
    work = Path(tempfile.mkdtemp(prefix="llm-quality-"))
    name = default_persona().name
    answers: list[Answer] = []
    grounding: dict[tuple[str, str], dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    persona: dict[tuple[str, str], dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    first_audio: dict[tuple[str, str], list[float]] = defaultdict(list)
    started = time.time()
    for done_models, model in enumerate(args.models, start=1):
        pipelines = Pipelines(base, model, work)
        known = {kb: documents_text(path) + "\n" + base.llm.system_prompt for kb, path in KBS.items()}
        for set_name, (kb, path, _, word_start) in GROUNDING_SETS.items():
            if set_name not in args.sets or "grounding" not in args.parts:
                continue
            cases: list[GroundingCase] = load_cases(path)[: args.limit or None]
            for case in cases:
                done = ask(pipelines[kb], case.question)
                score = score_case(case, done.reply.text, known[kb] + "\n" + case.question,
                                   word_start_only=word_start)
                for row in ("all", case.kind):
                    grounding[(model, set_name)][row].add(case, score)
                first_audio[(model, set_name)].append(done.timings_s.get("first_audio_s", 0.0))
                verdict = "correct" if score.correct else f"facts {score.found}/{score.total}"
                verdict += f"; invents: {', '.join(score.invented)}" if score.invents else ""
                answers.append(Answer(model, f"grounding/{set_name}", case.id, case.question, done.reply.text,
                                      done.timings_s.get("first_audio_s", 0.0), verdict))
                print(f"{model} {set_name} {case.id}: {verdict} | {done.reply.text[:90]}", flush=True)
        for set_name, (path, _) in PERSONA_SETS.items():
            if set_name not in args.sets or "persona" not in args.parts:
                continue
            turns: list[PersonaTurn] = load_turns(path, name)[: args.limit or None]
            for turn in turns:
                done = ask(pipelines[turn.kb], turn.question, turn.history)
                failure = turn.check(done.reply.text)
                for row in ("all", turn.category):
                    persona[(model, set_name)][row].append(not failure)
                answers.append(Answer(model, f"persona/{set_name}", turn.id, turn.question, done.reply.text,
                                      done.timings_s.get("first_audio_s", 0.0), failure or "pass"))
                print(f"{model} persona {set_name} {turn.id}: {failure or 'pass'} | {done.reply.text[:90]}",
                      flush=True)
        # written after each model, so an interrupted run keeps the models it finished
        write_results(args.output, args.models[:done_models], grounding, persona, first_audio, answers,
                      time.time() - started)


def write_results(output: Path, models: list[str], grounding: dict, persona: dict, first_audio: dict,
                  answers: list[Answer], seconds: float) -> None:
    labels = {m: local_model(m).label for m in models}
    lines = [
        "# Answer quality of the local models",
        "",
        f"Written by `python bench/llm_quality/run.py` on {time.strftime('%Y-%m-%d')} ({seconds / 60:.0f} min, "
        "2-core machine). Every question is a whole pipeline turn (retrieval, guard, LLM, TTS), no history, response "
        "cache off, greedy decoding for grounded turns. **Tuning** sets were used to write the prompts; **held-out** "
        "sets (`data/llm_eval/`, the fictional Saltmere Ferries knowledge base) were not used to tune (but their "
        "failures were read); **fresh** sets (`data/llm_eval_fresh/`, the fictional Kestrel Valley Makerspace, "
        "written 2026-12-04 by someone who had seen neither; their failures were read after one run), **fresh2** "
        "(`data/llm_eval_fresh2/`, the fictional Harrowgate Lane Veterinary Clinic, written later the same day by "
        "someone who had seen none of the others; its failures were read on 2026-12-04), **fresh3** "
        "(`data/llm_eval_fresh3/`, the fictional Kestrel Picturehouse cinema, written 2026-12-06 the same way; its "
        "failures were read on 2026-12-07), **fresh4** (`data/llm_eval_fresh4/`, the fictional Fernbrook Lido & "
        "Leisure Centre), **fresh5** (`data/llm_eval_fresh5/`, the fictional Brackenridge Community Library & "
        "Repair Café) and **fresh6** (`data/llm_eval_fresh6/`, the fictional Whinmoor Lane City Farm), all three "
        "written 2026-12-07 the same way and never read by whoever tunes. "
        "Scoring follows `data/llm_eval/README.md`: fact-correct = every key fact present; invented = a forbidden "
        "phrase, an answer to a question the documents do not cover, or a number or name found nowhere in the "
        "documents, the question or the system prompt. Every answer is in `answers.jsonl`.",
        "",
        "## Grounded questions",
        "",
        "| model | set | questions | fact-correct (answerable) | answers inventing a fact | first audio (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (model, set_name), rows in grounding.items():
        t = rows["all"]
        lines.append(f"| {labels[model]} | {set_name} | {t.cases} | {t.correct}/{t.answerable} "
                     f"({t.correct / max(t.answerable, 1):.0%}) | {t.invented}/{t.cases} "
                     f"({t.invented / max(t.cases, 1):.0%}) | "
                     f"{statistics.median(first_audio[(model, set_name)]):.2f} s |")
    lines += ["", "Held-out and fresh sets by kind of question:", "",
              "| model | set | kind | questions | fact-correct | inventing |", "|---|---|---|---:|---:|---:|"]
    for (model, set_name), rows in grounding.items():
        if GROUNDING_SETS[set_name][2]:
            continue
        for kind, t in sorted(rows.items()):
            if kind != "all":
                correct = f"{t.correct}/{t.answerable}" if t.answerable else "–"
                lines.append(f"| {labels[model]} | {set_name} | {kind} | {t.cases} | {correct} | "
                             f"{t.invented}/{t.cases} |")
    lines += ["", "## Persona and robustness turns", "", "| model | set | category | passed |", "|---|---|---|---:|"]
    for (model, set_name), rows in persona.items():
        for category, results in sorted(rows.items(), key=lambda kv: (kv[0] != "all", kv[0])):
            lines.append(f"| {labels[model]} | {set_name} | {category} | {sum(results)}/{len(results)} |")
    lines += ["", "## What still goes wrong (held-out and fresh)", ""]
    for a in answers:
        if not GROUNDING_SETS[a.set.split("/")[1]][2] and a.verdict not in ("correct", "pass"):
            lines.append(f"- {labels[a.model]}, {a.id} “{a.question}” → “{a.answer}” ({a.verdict})")
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (output / "answers.jsonl").open("w", encoding="utf-8") as out:
        for a in answers:
            out.write(json.dumps(a.__dict__, ensure_ascii=False) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
