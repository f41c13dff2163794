"""Which CPU features the installed llama.cpp was compiled for, and whether that build is the portable one.

llama.cpp's default build detects the build machine's CPU (``-march=native``). On an AVX-512/AMX Xeon that library
repacks Q4/Q8 weights into AMX buffers and crashes in its first ``decode``, and pip caches the wheel, so a later
machine without those instructions may reuse it. The project therefore builds one fixed instruction set (see
``scripts/install_llama_cpp.sh``) and checks it here: at install time (``python -m core.llama_build --check``), in
a test, and in the app's start-up log. Standard library only: the install step runs this before anything else is
installed, and the library is imported in a child process so that a broken build cannot take the caller down.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

DISTRIBUTION = "llama-cpp-python"
REQUIRED = ("AVX", "AVX2", "FMA", "F16C")
"""The portable build's instruction set (Intel Haswell 2013+, AMD Zen 2017+): without these it is not our build."""
FORBIDDEN_PREFIXES = ("AVX512", "AVX_VNNI", "AMX")
"""Features a portable build must not use: missing on many x86-64 CPUs, and AMX is the repack path that crashes."""
PROBE_TIMEOUT_S = 60.0
_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*)\s*=\s*(\d+)")
_PROBE = "import llama_cpp, sys; sys.stdout.write(llama_cpp.llama_print_system_info().decode())"


@dataclass(frozen=True, slots=True)
class BuildReport:
    """The installed llama.cpp: its version, its system-info line, and what makes it non-portable (if anything)."""

    version: str
    system_info: str
    problems: tuple[str, ...]

    @property
    def portable(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One log line, e.g. ``llama-cpp-python 0.3.36 (portable): CPU : SSE3 = 1 | ... | REPACK = 1``."""
        verdict = "portable" if self.portable else "NOT portable: " + "; ".join(self.problems)
        return f"{DISTRIBUTION} {self.version} ({verdict}): {self.system_info}"


def features(system_info: str) -> dict[str, bool]:
    """The ``NAME = 0/1`` flags of a ``llama_print_system_info()`` string."""
    return {name: value != "0" for name, value in _FEATURE.findall(system_info)}


def problems(system_info: str) -> tuple[str, ...]:
    """Why a build is not the portable one: a forbidden feature compiled in, or a required one missing."""
    flags = features(system_info)
    found = [f"uses {name}" for name, on in flags.items() if on and name.startswith(FORBIDDEN_PREFIXES)]
    missing = [f"lacks {name}" for name in REQUIRED if not flags.get(name)]
    return tuple(found + missing)


def installed_version() -> str | None:
    """The installed llama-cpp-python version, or None."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def read_system_info(python: str = sys.executable, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """``llama_print_system_info()`` of the installed library, read in a child process.

    Raises:
        RuntimeError: the library cannot be imported, or the child crashed or hung.
    """
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"importing llama_cpp took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"cannot import llama_cpp: {last}")
    return " ".join(done.stdout.split())


def report(python: str = sys.executable) -> BuildReport:
    """The installed build's report.

    Raises:
        RuntimeError: llama-cpp-python is not installed or cannot be imported.
    """
    version = installed_version()
    if version is None:
        raise RuntimeError(f"{DISTRIBUTION} is not installed")
    info = read_system_info(python)
    return BuildReport(version, info, problems(info))


def main(argv: list[str] | None = None) -> int:
    """``--check VERSION``: exit 0 only if that version is installed and portable; otherwise say why, exit 1."""
    parser = argparse.ArgumentParser(prog="python -m core.llama_build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="VERSION", help="the version the project pins")
    args = parser.parse_args(argv)
    try:
        found = report()
    except RuntimeError as exc:
        print(f"llama_build: {exc}", file=sys.stderr)
        return 1
    print(f"llama_build: {found.line()}", file=sys.stderr)
    if args.check and found.version != args.check:
        print(f"llama_build: version {found.version} installed, {args.check} wanted", file=sys.stderr)
        return 1
    return 0 if found.portable else 1


if __name__ == "__main__":
    sys.exit(main())
