"""Load benchmark: N simultaneous users, each a real ``gradio_client`` session on loopback asking M questions through
``/ask``, against the app started as its own process; per scenario the errors, queue wait, time to first audio,
whole-turn latency, turns per minute, and the app's memory and disk before and after.

Scenarios (``--scenarios``, default all but ``soak``):
    local, local+cache    the offline default (local LLM), response cache off / on
    cloud, cloud+cache    the LLM is the emulated Databricks endpoint (``tests/fake_databricks.py``, paced as a real
                          one: ``CLOUD_FIRST_TOKEN_S`` then ``CLOUD_TOKEN_INTERVAL_S`` per token), cache off / on
    long                  ``LONG_TURNS`` turns on the emulated endpoint, cache off, with the disk caps lowered to
                          ``LONG_CAP_MB``, for memory and disk growth
    soak                  like ``long`` but for ``--soak-minutes`` (by hand)

The questions cycle through ``bench/latency/questions*.txt`` (20 questions, so with the cache on most turns repeat
one). Times: "queue wait" runs from the call to the moment Gradio reports the call processing (polled every
``STATUS_POLL_S``); "first audio" for the user is that wait plus the server's time to first audio (the pipeline's
``first_audio_s``); "whole turn" is the call's wall time, the reply's audio downloaded.

Run: ``python bench/load/run.py [--clients 8] [--turns 10] [--scenarios local cloud ...] [--soak-minutes 30]``;
results go to ``bench/load/results.md`` and ``results.json``. Heavy: wrap it in ``flock /tmp/avatar-heavy.lock``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gradio_client import Client  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

from core.disk_budget import BYTES_PER_MB, folder_bytes  # noqa: E402
from scripts.app_process import start_app, stop_app  # noqa: E402
from tests.fake_databricks import FAKE_TOKEN, FakeServing, FakeServingServer  # noqa: E402

HERE = Path(__file__).resolve().parent
QUESTIONS = [q.strip() for name in ("questions.txt", "questions_kb.txt")
             for q in (ROOT / "bench" / "latency" / name).read_text().splitlines() if q.strip()]
PORT = 7911
START_TIMEOUT_S = 900
PREPARED_TIMEOUT_S = 900
PREPARED_MARKS = ("knowledge-base documents in", "could not prepare the knowledge-base documents")
"""Log lines that say the app's LLM has finished preparing its documents after start-up (``Pipeline.warm_up``)."""
POLL_S = 1.0
STATUS_POLL_S = 0.05
RSS_SAMPLE_S = 2.0
CLOUD_ANSWER = ("Good question. The assistant answers from its knowledge base and speaks each sentence as soon as "
                "it is written. Ask me another one whenever you like.")
CLOUD_FIRST_TOKEN_S = 0.4
CLOUD_TOKEN_INTERVAL_S = 0.02
"""The emulated endpoint's pace: about what a Databricks pay-per-token 8B endpoint shows (0.4 s to the first token,
50 tokens per second)."""
LONG_TURNS = 200
LONG_CAP_MB = 20.0
"""The long run lowers both disk caps to this, so that 200 turns (about 0.5 MB of audio each) must hit them."""
PERCENTILE_HIGH = 95


@dataclass(frozen=True)
class Scenario:
    """One benchmark configuration."""

    name: str
    llm: str  # "local" or "cloud"
    cache: bool
    turns_total: int = 0  # 0: clients x turns
    cap_mb: float = 0.0  # 0: the app's default caps
    soak: bool = False


SCENARIOS = {
    "local": Scenario("local", "local", cache=False),
    "local+cache": Scenario("local+cache", "local", cache=True),
    "cloud": Scenario("cloud", "cloud", cache=False),
    "cloud+cache": Scenario("cloud+cache", "cloud", cache=True),
    "long": Scenario("long", "cloud", cache=False, turns_total=LONG_TURNS, cap_mb=LONG_CAP_MB),
    "soak": Scenario("soak", "cloud", cache=False, cap_mb=LONG_CAP_MB, soak=True),
}
DEFAULT_SCENARIOS = ("local", "local+cache", "cloud", "cloud+cache", "long")


@dataclass
class Turn:
    """One /ask call as the client saw it."""

    client: int
    ok: bool
    wall_s: float
    queue_wait_s: float = 0.0
    server_first_audio_s: float = 0.0
    cache: str = ""
    error: str = ""


@dataclass
class Result:
    """A scenario's figures."""

    scenario: str
    clients: int
    turns: int
    errors: int
    turn_limit: str
    minutes: float
    turns_per_min: float
    queue_wait_s: tuple[float, float]
    first_audio_user_s: tuple[float, float]
    first_audio_server_s: tuple[float, float]
    turn_s: tuple[float, float]
    cache_hits: int
    rss_mb: tuple[float, float, float]  # before, after, peak
    disk_mb: tuple[float, float]
    cap_mb: float
    error_samples: list[str] = field(default_factory=list)


def median_p95(values: list[float]) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    ordered = sorted(values)
    high = ordered[min(len(ordered) - 1, round(PERCENTILE_HIGH / 100 * (len(ordered) - 1)))]
    return (statistics.median(ordered), high)


def rss_of(pid: int) -> float:
    """The resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """The peak resident memory of a process, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, rss_of(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_prepared(log: Path, offset: int, timeout_s: float) -> None:
    """Wait until the app's log (past ``offset``) says its LLM prepared the knowledge-base documents."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(mark in log.read_text(errors="replace")[offset:] for mark in PREPARED_MARKS):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"the app did not prepare its documents in {timeout_s:.0f} s")


def app_env(scenario: Scenario, work: Path, cloud_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AVATAR_", "DATABRICKS_", "OPENAI_"))}
    env |= {"AVATAR_CACHE_DIR": str(work / "cache"), "GRADIO_TEMP_DIR": str(work / "gradio"),
            "AVATAR_TURN_STORE": "sqlite", "AVATAR_TURN_STORE_PATH": str(work / "cache" / "turns.sqlite"),
            "AVATAR_RESPONSE_CACHE": "1" if scenario.cache else "0", "AVATAR_EXPERIMENT": "none",
            "GRADIO_SERVER_PORT": str(PORT), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    if scenario.llm == "cloud":
        env |= {"AVATAR_LLM": "databricks", "DATABRICKS_HOST": cloud_url, "DATABRICKS_TOKEN": FAKE_TOKEN,
                "DATABRICKS_CONFIG_FILE": str(work / "no-databrickscfg")}
    else:
        env["AVATAR_LLM"] = "local"
    if scenario.cap_mb:
        env |= {"AVATAR_AUDIO_MAX_MB": str(scenario.cap_mb), "AVATAR_UPLOADS_MAX_MB": str(scenario.cap_mb)}
    return env


def one_user(url: str, index: int, turns: int, deadline: float | None) -> list[Turn]:
    """One session asking ``turns`` questions (or until ``deadline``), each after the previous answer."""
    client = Client(url, verbose=False)
    done: list[Turn] = []
    try:
        n = 0
        while (n < turns) if deadline is None else (time.monotonic() < deadline):
            question = QUESTIONS[(index * 7 + n) % len(QUESTIONS)]
            started = time.perf_counter()
            job = client.submit(question, None, "", api_name="/ask")  # "": the default character
            processing = None
            while not job.done():
                if processing is None and job.status().code in (Status.PROCESSING, Status.ITERATING):
                    processing = time.perf_counter()
                time.sleep(STATUS_POLL_S)
            try:
                _text, _wav, _lipsync, details = job.result()
            except Exception as exc:  # noqa: BLE001 - every failure is a benchmark figure, not a crash
                done.append(Turn(index, False, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}"))
            else:
                wall = time.perf_counter() - started
                timings = details["timings_s"]
                queued = (processing - started) if processing else max(0.0, wall - timings.get("total_s", 0.0))
                done.append(Turn(index, True, wall, queued, timings.get("first_audio_s", 0.0),
                                 details.get("cache", "")))
            n += 1
    finally:
        client.close()
    return done


def turn_limit(log: Path) -> str:
    """The turn policy line the app logged at start ("turns: 1 at a time; ...")."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "turn policy:" in line]
    return lines[-1].split("turn policy:", 1)[1].split(";")[0].strip() if lines else "?"


def run_scenario(scenario: Scenario, clients: int, turns: int, soak_minutes: float, work: Path,
                 cloud_url: str) -> Result:
    env = app_env(scenario, work, cloud_url)
    log = work / f"app-{scenario.name}.log"
    log.touch()
    offset = len(log.read_text())
    app = start_app(ROOT, env, PORT, log, START_TIMEOUT_S)
    try:
        wait_prepared(log, offset, PREPARED_TIMEOUT_S)
        folders = (work / "cache", work / "gradio")
        rss_before, disk_before = rss_of(app.pid), folder_bytes(folders)
        per_client = -(-scenario.turns_total // clients) if scenario.turns_total else turns
        deadline = time.monotonic() + soak_minutes * 60 if scenario.soak else None
        url = f"http://127.0.0.1:{PORT}/"
        started = time.perf_counter()
        with RssSampler(app.pid) as sampler, ThreadPoolExecutor(clients) as pool:
            results = [t for batch in pool.map(lambda i: one_user(url, i, per_client, deadline), range(clients))
                       for t in batch]
        minutes = (time.perf_counter() - started) / 60
        rss_after, disk_after = rss_of(app.pid), folder_bytes(folders)
        limit = turn_limit(log)
    finally:
        stop_app(app)
    ok = [t for t in results if t.ok]
    return Result(
        scenario=scenario.name, clients=clients, turns=len(results), errors=len(results) - len(ok),
        turn_limit=limit, minutes=minutes, turns_per_min=len(ok) / minutes if minutes else 0.0,
        queue_wait_s=median_p95([t.queue_wait_s for t in ok]),
        first_audio_user_s=median_p95([t.queue_wait_s + t.server_first_audio_s for t in ok]),
        first_audio_server_s=median_p95([t.server_first_audio_s for t in ok]),
        turn_s=median_p95([t.wall_s for t in ok]),
        cache_hits=sum(1 for t in ok if t.cache not in ("", "miss")),
        rss_mb=(rss_before, rss_after, max(sampler.peak, rss_after)),
        disk_mb=(disk_before / BYTES_PER_MB, disk_after / BYTES_PER_MB), cap_mb=scenario.cap_mb,
        error_samples=sorted({t.error for t in results if not t.ok})[:3],
    )


def pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.2f} / {values[1]:.2f}"


def table(results: list[Result]) -> str:
    head = ("| scenario | users × turns | turn limit | errors | queue wait s (median / p95) | first audio, user s | "
            "first audio, server s | whole turn s | turns/min | cache hits | RSS MB before → after (peak) | "
            "disk MB before → after (cap) |\n|" + "---|" * 12)
    rows = []
    for r in results:
        cap = f" (cap {r.cap_mb:.0f} + {r.cap_mb:.0f})" if r.cap_mb else ""
        rows.append(
            f"| {r.scenario} | {r.clients} × {r.turns // max(r.clients, 1)} ({r.turns}) | {r.turn_limit} | "
            f"{r.errors} | {pair(r.queue_wait_s)} | {pair(r.first_audio_user_s)} | {pair(r.first_audio_server_s)} | "
            f"{pair(r.turn_s)} | {r.turns_per_min:.1f} | {r.cache_hits} | {r.rss_mb[0]:.0f} → {r.rss_mb[1]:.0f} "
            f"({r.rss_mb[2]:.0f}) | {r.disk_mb[0]:.1f} → {r.disk_mb[1]:.1f}{cap} |")
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--turns", type=int, default=10, help="questions per user")
    parser.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="load-bench-"))
    fake = FakeServing(answer=CLOUD_ANSWER, first_token_s=CLOUD_FIRST_TOKEN_S, token_interval_s=CLOUD_TOKEN_INTERVAL_S)
    results: list[Result] = []
    with FakeServingServer(fake) as cloud:
        for name in args.scenarios:
            print(f"== {name}: {args.clients} users", flush=True)
            result = run_scenario(SCENARIOS[name], args.clients, args.turns, args.soak_minutes, work, cloud.url)
            results.append(result)
            print(table([result]), flush=True)
    command = " ".join(["python bench/load/run.py", *sys.argv[1:]])
    args.out.write_text(
        f"# Load benchmark\n\nMade by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on a 2-core machine "
        f"(`flock /tmp/avatar-heavy.lock`, no other benchmark running). Each user is a `gradio_client` session on "
        f"loopback asking the next question as soon as the previous answer arrived; see the script's docstring for "
        f"the scenarios and what each time measures.\n\n{table(results)}\n")
    args.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
