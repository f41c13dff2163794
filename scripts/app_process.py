"""Run ``python app.py`` as its own process and wait until it serves (for the experiment bench and the Databricks
rehearsal test, which talk to the app as its users do)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

POLL_S = 1.0


def start_app(folder: Path, env: dict[str, str], port: int, log: Path, timeout_s: float) -> subprocess.Popen:
    """Start the app in ``folder`` with ``env``, its output appended to ``log``; return once ``port`` answers.

    Raises:
        RuntimeError: the app exited, or did not answer within ``timeout_s`` (the end of its log says why).
    """
    process = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return process
        except OSError:
            time.sleep(POLL_S)
    process.kill()
    raise RuntimeError(f"the app did not start in {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def stop_app(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop the app as a platform does (SIGTERM), killing it if it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
