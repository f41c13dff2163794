"""``python -m core.llm``: the install and probe commands run from the package's entry point, without Python's
warning that a module of an already imported package is run again as ``__main__``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.llm", *arguments], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


def test_an_unknown_command_prints_the_usage():
    done = run("download")
    assert done.returncode != 0 and "usage: python -m core.llm {install,probe}" in done.stderr


def test_install_of_an_unknown_model_says_so_without_a_runtime_warning():
    done = run("install", "no-such-model")
    assert done.returncode == 1 and "packaged:" in done.stderr, done.stderr
    assert "RuntimeWarning" not in done.stderr


def test_probe_of_a_missing_file_fails_in_the_child_not_silently(tmp_path):
    done = run("probe", str(tmp_path / "missing.gguf"))
    assert done.returncode != 0 and done.stderr.strip() and "RuntimeWarning" not in done.stderr
