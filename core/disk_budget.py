"""Keep folders of generated files (clip WAVs, replayed replies, Gradio's uploads and outputs) under a size cap.

Files are removed oldest first (by modification time) once the folders together pass the cap. A file younger than
``MIN_AGE_S`` is never removed: it may belong to a turn still running or to a clip a browser has not fetched yet, so
the folders can pass the cap by at most what the last few minutes wrote. Only files are removed, never folders, and a
file that vanishes meanwhile (another instance trimming the same folder) is simply skipped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIN_AGE_S = 300.0
"""Files younger than this are kept whatever the cap: longer than any turn plus the time a browser takes to fetch
its clips."""
BYTES_PER_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TrimReport:
    """What one trim found and did: bytes in the folders before and after, files removed."""

    bytes_before: int
    bytes_after: int
    removed: int


def _files(folders: Iterable[Path]) -> list[tuple[float, int, Path]]:
    """Every file under ``folders`` as (modification time, size, path); folders that do not exist have none."""
    found = []
    for folder in folders:
        for root, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(root) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
    return found


def folder_bytes(folders: Iterable[Path]) -> int:
    """The total size of the files under ``folders``."""
    return sum(size for _mtime, size, _path in _files(folders))


class FolderBudget:
    """A size cap over one or more folders, enforced by ``trim()`` (safe to call from several threads at once)."""

    def __init__(self, folders: Iterable[Path], max_mb: float, *, min_age_s: float = MIN_AGE_S) -> None:
        self.folders = tuple(Path(f) for f in folders)
        self.max_bytes = int(max_mb * BYTES_PER_MB)
        self.min_age_s = min_age_s
        self._lock = threading.Lock()

    def trim(self) -> TrimReport:
        """Remove the oldest files old enough to go until the folders fit the cap."""
        with self._lock:
            files = sorted(_files(self.folders))
            total = before = sum(size for _mtime, size, _path in files)
            removed = 0
            cutoff = time.time() - self.min_age_s
            for mtime, size, path in files:
                if total <= self.max_bytes or mtime > cutoff:
                    break
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                total -= size
                removed += 1
        if removed:
            log.info("disk budget: removed %d old files (%.1f MB -> %.1f MB, cap %.0f MB) under %s", removed,
                     before / BYTES_PER_MB, total / BYTES_PER_MB, self.max_bytes / BYTES_PER_MB,
                     ", ".join(map(str, self.folders)))
        return TrimReport(before, total, removed)
