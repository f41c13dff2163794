"""Stage the app for Databricks Apps: the files it runs with, the Databricks requirements as requirements.txt, and
a check that every file is under the 10 MB limit.

Usage: python scripts/databricks_app.py [OUT_DIR]   (default build/databricks-app; `make databricks-app` runs it)

Copies the repository's tracked files except what only developers use (tests, benchmarks, pictures, CI, build
scripts), adds the built three.js bundle when it exists (else the avatar loads three.js from its CDN fallback), and
writes ``requirements-databricks.txt`` as the folder's ``requirements.txt``: Databricks Apps installs that at
deploy time, and it compiles no llama.cpp and downloads no local LLM weights. Deploy the folder with the bundle in
it (``databricks bundle deploy``) or sync it to the workspace (README: "Deploy to Databricks Apps").
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_BYTES = 10_000_000
"""Databricks Apps refuse any single app file larger than 10 MB (the decimal reading, the stricter one)."""
LEFT_OUT = ("tests/", "bench/", "docs/", "scripts/", ".ci/", "avatar_assets/build_avatar.py", "avatar_assets/builder/",
            "avatar_assets/characters/", "Makefile",
            "requirements.txt", "requirements-dev.txt", "requirements-databricks.txt", ".gitignore")
"""Tracked paths the app does not run with (prefixes end in "/")."""
BUILT = ("components/static/vendor/three-bundle.js",)
"""Untracked build outputs the app uses when present."""
REQUIREMENTS = "requirements-databricks.txt"


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [path for path in listing.split("\0") if path and (ROOT / path).is_file()]


def app_files() -> list[str]:
    """The repository paths the staged app holds (its requirements.txt aside)."""
    kept = [p for p in tracked_files() if not any(p == x or (x.endswith("/") and p.startswith(x)) for x in LEFT_OUT)]
    return sorted([*kept, *(p for p in BUILT if (ROOT / p).is_file())])


def stage(out: Path) -> list[Path]:
    """Write the staged app to ``out`` (emptied first); return its files.

    Raises:
        SystemExit: a file is over the size limit.
    """
    if out.exists():
        shutil.rmtree(out)
    too_big = [(p, (ROOT / p).stat().st_size) for p in app_files() if (ROOT / p).stat().st_size > MAX_FILE_BYTES]
    if too_big:
        listed = ", ".join(f"{p} ({size / 1e6:.1f} MB)" for p, size in too_big)
        raise SystemExit(f"databricks_app: over the 10 MB Databricks Apps file limit: {listed}")
    for path in app_files():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    shutil.copy2(ROOT / REQUIREMENTS, out / "requirements.txt")
    return sorted(p for p in out.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "build" / "databricks-app")
    args = parser.parse_args(argv)
    files = stage(args.out)
    sizes = {p: p.stat().st_size for p in files}
    largest = max(sizes, key=sizes.__getitem__)
    print(f"databricks_app: staged {len(files)} files, {sum(sizes.values()) / 1e6:.1f} MB in {args.out}; largest "
          f"{largest.relative_to(args.out)} ({sizes[largest] / 1e6:.1f} MB, limit {MAX_FILE_BYTES / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
