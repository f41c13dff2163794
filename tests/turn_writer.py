"""One "app instance" for the concurrency test: writes N rated turns to a turn store, starting at a given time;
and the made-up turns the store tests share.

Usage: python -m tests.turn_writer (--sqlite PATH | --url URL) --instance NAME --turns N --start-at UNIX_TIME
Prints {"started": ..., "finished": ...}: when its first write began and its last one was stored (Unix seconds).
"""

from __future__ import annotations

import argparse
import json
import time

from core.analytics import TurnLog
from core.turnstore import PostgresStore, SQLiteStore, TurnStore
from core.types import Emotion, Reply, StageMetrics, TurnComplete, TurnOptions, UserTurn, VisemeTrack

PAUSE_S = 0.02
"""Between turns, as an app waits for its next question (a writer that never pauses can starve SQLite's others)."""


def asked(text: str = "What is Lakebase?") -> UserTurn:
    """A typed question."""
    return UserTurn(text, Emotion("neutral", {"neutral": 0.8}, "test"))


def turn(first_audio_s: float) -> TurnComplete:
    """A finished local turn with this time to first audio."""
    return TurnComplete(Reply("An answer.", 100, 20, "local", "model"), Emotion("joy", {"joy": 0.9}, "test"), "",
                        VisemeTrack(1.0, (), ()), {"first_audio_s": first_audio_s, "total_s": 2 * first_audio_s},
                        (StageMetrics("llm", "local", 1.0, 0.2, {"prompt_tokens": 100, "completion_tokens": 20}),
                         StageMetrics("tts", "piper", 0.2, 0.1, {"characters": 10, "audio_s": 1.0})))


def main() -> None:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite")
    where.add_argument("--url")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--turns", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    args = parser.parse_args()
    store: TurnStore = SQLiteStore(args.sqlite) if args.sqlite else PostgresStore(args.url)
    log = TurnLog(store)
    store.engine()  # connect and migrate before the start line, as an app does at start-up
    time.sleep(max(0.0, args.start_at - time.time()))
    started = time.time()
    for i in range(args.turns):
        key = f"{args.instance}-{i}"
        session = f"{args.instance}-session-{i % 3}"
        options = TurnOptions(experiment="load", variant=args.instance)
        log.record_assignment("load", session, args.instance)
        log.record_turn(session, asked(f"Question {i}?"), turn(0.5 + i / 100), turn_key=key, options=options)
        log.record_feedback(key, "up" if i % 2 else "down", f"comment {i}", session_id=session)
        time.sleep(PAUSE_S)
    if not store.outbox.wait_empty(30):
        raise SystemExit(f"{store.outbox.pending} writes never reached the store")
    print(json.dumps({"started": started, "finished": time.time()}))


if __name__ == "__main__":
    main()
