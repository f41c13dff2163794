"""``python -m core.experiments list`` and ``python -m core.experiments report NAME [--json]``: the experiments and
their reports, from the configured turn store (the same environment variables as the app)."""

from __future__ import annotations

import argparse
import json
import sys

from core.analytics import TurnLog
from core.config import load_config
from core.errors import PipelineError
from core.experiments import ExperimentBook
from core.experiments.report import experiment_report
from core.turnstore import StoreUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.experiments", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="experiments in the file and in the store")
    report = commands.add_parser("report", help="an experiment's report with its verdict")
    report.add_argument("name")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    config = load_config()
    try:
        book = ExperimentBook.load(config.experiments)
        turn_log = TurnLog.for_config(config)
        if args.command == "list":
            seen = set(turn_log.experiments_seen())
            for name in sorted(set(book.experiments) | seen):
                where = "file and store" if name in seen and name in book.experiments else (
                    "store only" if name in seen else "file only")
                running = " (running)" if book.running and book.running.name == name else ""
                print(f"{name}{running}: {where}")
            return 0
        result = experiment_report(turn_log, book, args.name)
        print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else result.to_text())
        return 0
    except (PipelineError, StoreUnavailable) as exc:
        message = exc.user_message() if isinstance(exc, PipelineError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
