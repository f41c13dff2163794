"""Bounded disk: folders of generated files stay under their cap, oldest files going first, young files kept; the
pipeline trims its audio folders after every turn."""

from __future__ import annotations

import os
import time

from core.config import load_config
from core.disk_budget import BYTES_PER_MB, FolderBudget, folder_bytes
from tests.fakes import fake_pipeline

KB = 1024


def write(path, size, age_s):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_oldest_files_go_first_until_the_folders_fit(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    files = [write(a / "old.wav", 400 * KB, 3600), write(b / "x" / "older.wav", 400 * KB, 7200),
             write(a / "recent.wav", 400 * KB, 1200)]
    report = FolderBudget((a, b), max_mb=900 * KB / BYTES_PER_MB, min_age_s=60).trim()
    assert [f.exists() for f in files] == [True, False, True]  # the oldest one, in the other folder, went
    assert (report.bytes_before, report.bytes_after, report.removed) == (1200 * KB, 800 * KB, 1)
    assert folder_bytes((a, b)) == 800 * KB


def test_young_files_are_kept_even_past_the_cap(tmp_path):
    young = [write(tmp_path / f"{i}.wav", 300 * KB, 5) for i in range(3)]
    report = FolderBudget((tmp_path,), max_mb=100 * KB / BYTES_PER_MB, min_age_s=60).trim()
    assert all(f.exists() for f in young) and report.removed == 0


def test_a_missing_folder_is_empty(tmp_path):
    assert FolderBudget((tmp_path / "nope",), 1.0).trim().bytes_before == 0


def test_the_pipeline_keeps_its_audio_folder_under_the_cap(tmp_path):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_AUDIO_MAX_MB": "0.05",
                          "AVATAR_RESPONSE_CACHE": "0"})
    pipeline = fake_pipeline(config)
    pipeline.audio_budget.min_age_s = 0.0  # every finished clip may go (a real app keeps a few minutes' worth)
    for i in range(5):
        *_, done = pipeline.run_turn([], text=f"Question number {i}?")
        assert os.path.exists(done.wav_path)  # the turn just finished keeps its audio
    assert folder_bytes(pipeline.audio_budget.folders) <= 0.05 * BYTES_PER_MB + os.path.getsize(done.wav_path) * 2
    assert len(list(pipeline.audio_dir.iterdir())) < 5 * 4  # older turns' clips are gone
