"""An A/B experiment run on real turns: start the app with an experiment running, talk to it as several users do,
rate each answer, and write the experiment's report to ``bench/experiments/results.md``.

Each simulated user is one ``gradio_client`` session (so the app assigns it a variant), asks a few questions from
``data/llm_grounding_eval.jsonl`` through ``/ask`` and rates every answer through ``/feedback`` by a fixed rule: a
thumbs up when the answer contains every fact the question file lists for it (any one spelling of each), else a
thumbs down with the missing facts as the comment. The response cache is off, so every turn does the real work.

Run: ``python bench/experiments/run.py [--experiment streaming] [--sessions 16] [--turns 3]
[--database-url postgresql://...]`` (default store: a new SQLite file). Heavy: wrap it in
``flock /tmp/avatar-heavy.lock``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gradio_client import Client  # noqa: E402

from core.analytics import TurnLog  # noqa: E402
from core.config import load_config  # noqa: E402
from core.experiments import ExperimentBook  # noqa: E402
from core.experiments.report import experiment_report  # noqa: E402
from core.llm.evaluation import load_cases  # noqa: E402
from scripts.app_process import start_app, stop_app  # noqa: E402

HERE = Path(__file__).resolve().parent
QUESTIONS = [case for case in load_cases(ROOT / "data" / "llm_grounding_eval.jsonl")
             if case.answerable]  # a question with facts to rate
PORT = 7904
START_TIMEOUT_S = 600


def rate(answer: str, facts: Sequence[Sequence[str]]) -> tuple[str, str]:
    """The fixed rating rule: "up" when every fact is in the answer, else "down" and what was missing."""
    text = answer.lower()
    missing = [alternatives[0] for alternatives in facts if not any(a in text for a in alternatives)]
    return ("down", "missing: " + ", ".join(missing)) if missing else ("up", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="streaming")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--turns", type=int, default=3, help="questions per session")
    parser.add_argument("--database-url", default="", help="a PostgreSQL store (default: a new SQLite file)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="experiment-bench-"))
    store_env = {"DATABASE_URL": args.database_url} if args.database_url else {
        "AVATAR_TURN_STORE": "sqlite", "AVATAR_TURN_STORE_PATH": str(work / "turns.sqlite")}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AVATAR_", "DATABRICKS_", "OPENAI_"))},
           **store_env, "AVATAR_EXPERIMENT": args.experiment, "AVATAR_RESPONSE_CACHE": "0",
           "GRADIO_SERVER_PORT": str(PORT), "HF_HUB_OFFLINE": "1"}
    app = start_app(ROOT, env, PORT, work / "app.log", START_TIMEOUT_S)
    started = time.time()
    try:
        for session in range(args.sessions):
            client = Client(f"http://127.0.0.1:{PORT}/", verbose=False)
            for turn in range(args.turns):
                question = QUESTIONS[(session * args.turns + turn) % len(QUESTIONS)]
                text, _audio, _lipsync, details = client.predict(question.question, None, api_name="/ask")
                rating, comment = rate(text, question.facts)
                client.predict(details["turn_key"], rating, comment, api_name="/feedback")
                print(f"session {session + 1:2d} {details['variant']:>12}: {rating:4} "
                      f"{details['timings_s'].get('first_audio_s', float('nan')):.2f} s  {question.question}")
            client.close()
    finally:
        stop_app(app)
    minutes = (time.time() - started) / 60

    config = load_config(env)
    report = experiment_report(TurnLog.for_config(config), ExperimentBook.load(config.experiments), args.experiment)
    store = "PostgreSQL" if args.database_url else "SQLite"
    args.out.write_text(
        f"# Experiment `{args.experiment}` on real turns\n\n"
        f"Made by `python bench/experiments/run.py --experiment {args.experiment} --sessions {args.sessions} "
        f"--turns {args.turns}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, under `flock` on a 2-core machine shared "
        f"with other work ({minutes:.0f} min). The app ran with its default offline stack, the response cache off "
        f"and the turn log in {store}; {args.sessions} `gradio_client` sessions asked {args.turns} questions each "
        "from `data/llm_grounding_eval.jsonl` and rated every answer by a fixed rule (thumbs up when it contains "
        "every listed fact). The ratings are therefore a measure of grounding, not a person's taste.\n\n"
        f"```\n{report.to_text()}\n```\n"
    )
    print(report.to_text())
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
