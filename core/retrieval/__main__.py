"""Command line for the knowledge base: ``python -m core.retrieval build [--kb DIR]`` (re)builds the local index.

``search QUERY`` prints the passages a question retrieves, with their scores, to check the index by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from core.config import AppConfig, load_config
from core.errors import PipelineError
from core.retrieval import LocalVectorIndex


def _config(kb: str | None) -> AppConfig:
    config = load_config()
    if kb is None:
        return config
    return dataclasses.replace(config, retrieval=dataclasses.replace(config.retrieval, kb_dir=Path(kb).resolve()))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m core.retrieval", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="bring the local index in line with the knowledge-base folder")
    build.add_argument("--kb", help="knowledge-base folder (default: AVATAR_KB_DIR or ./knowledge_base)")
    search = commands.add_parser("search", help="print the passages a query retrieves")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=3)
    search.add_argument("--kb", help="knowledge-base folder (default: AVATAR_KB_DIR or ./knowledge_base)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        index = LocalVectorIndex(_config(args.kb))
    except PipelineError as exc:
        print(exc.user_message(), file=sys.stderr)
        return 1
    if args.command == "build":
        report = index.report
        print(f"{index.settings.kb_dir}: {report.summary()}; fingerprint {index.fingerprint()}")
        for skipped in report.skipped:
            print(f"  skipped {skipped.source}: {skipped.reason}")
        return 0
    for passage in index.search(args.query, args.k):
        print(f"{passage.score:.3f}  {passage.citation()}\n       {passage.text[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
