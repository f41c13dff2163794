"""Rhubarb Lip Sync (github.com/DanielSWolf/rhubarb-lip-sync) run as a program, as one lip-sync timing source.

The binary needs its ``res/sphinx`` folder (PocketSphinx models) next to it; both recognisers use it. Failures
become ``BackendError``s that say what happened: resources missing (found before the first run, so the engine
skips Rhubarb), the program crashing (killed by a signal), running past its time budget, exiting with an error
(Rhubarb's own reason, read from its ``--machineReadable`` log), or printing something that is not its JSON.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from core.errors import BackendError, ModelNotFoundError
from core.lipsync.phonemes import VisemeSegment
from core.lipsync.tables import shape_table
from core.types import RHUBARB_SHAPES, Speech

STAGE = "lipsync"
RECOGNIZERS = ("pocketSphinx", "phonetic")
"""Rhubarb's recognisers: PocketSphinx word recognition (guided by a transcript when given) or phones only."""
RESOURCE = Path("res") / "sphinx" / "cmudict-en-us.dict"
"""A file of the PocketSphinx models every Rhubarb run reads, relative to the binary's folder."""
START_BUDGET_S = 15.0
BUDGET_PER_AUDIO_S = 3.0
"""Time budget: Rhubarb takes ~2.3 s to start and ~0.55 s per audio second here (PocketSphinx), so a run gets
15 s plus 3 s per second of audio (5x headroom) before it counts as hung."""


def time_budget(duration_s: float) -> float:
    """Seconds a run on ``duration_s`` seconds of audio may take before it is stopped."""
    return START_BUDGET_S + BUDGET_PER_AUDIO_S * duration_s
INSTALL_HINT = ("download a release from github.com/DanielSWolf/rhubarb-lip-sync/releases, unpack it and put "
                "'rhubarb' on PATH or set AVATAR_RHUBARB_PATH (keep its res/ folder next to the binary)")
ERROR_TAIL_CHARS = 300


def find_rhubarb(binary: str = "") -> Path:
    """The Rhubarb program at ``binary`` (a path or a name on PATH, default "rhubarb"), with its resources.

    Raises:
        ModelNotFoundError: no such program, or its res/ folder is not next to it.
    """
    found = shutil.which(binary or "rhubarb")
    if found is None:
        where = f"no rhubarb program at {binary!r}" if binary else "no 'rhubarb' program on PATH"
        raise ModelNotFoundError(STAGE, "rhubarb", f"{where}; {INSTALL_HINT}")
    path = Path(found).resolve()
    if not (path.parent / RESOURCE).is_file():
        raise ModelNotFoundError(STAGE, "rhubarb", f"{path} has no {RESOURCE} next to it; {INSTALL_HINT}")
    return path


def rhubarb_command(binary: Path, wav: Path, recognizer: str, dialog: Path | None) -> list[str]:
    """The command line for one run: JSON out, Rhubarb's extended shapes G, H and X, a JSON log on stderr."""
    command = [str(binary), "-r", recognizer, "-f", "json", "--extendedShapes", "GHX", "--machineReadable"]
    if dialog is not None:
        command += ["-d", str(dialog)]
    return [*command, str(wav)]


def run_rhubarb(binary: Path, speech: Speech, recognizer: str, timeout_s: float) -> dict:
    """Rhubarb's JSON document for ``speech`` (its transcript passed as the dialog file when it has one).

    Raises:
        BackendError: Rhubarb crashed, timed out, failed or printed no valid JSON (see the module docstring).
    """
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="rhubarb-") as tmp:
        wav = Path(tmp) / "speech.wav"
        sf.write(str(wav), speech.audio, speech.sample_rate, subtype="PCM_16")
        dialog = None
        if speech.text.strip():
            dialog = Path(tmp) / "dialog.txt"
            dialog.write_text(speech.text, encoding="utf-8")
        try:
            done = subprocess.run(rhubarb_command(binary, wav, recognizer, dialog), capture_output=True,
                                  text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(STAGE, "rhubarb", f"rhubarb took longer than {timeout_s:.0f} s on "
                               f"{speech.duration_s:.1f} s of audio and was stopped", retryable=True) from exc
        except OSError as exc:
            raise BackendError(STAGE, "rhubarb", f"cannot run {binary}: {exc}") from exc
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "a signal"
        raise BackendError(STAGE, "rhubarb", f"rhubarb crashed (killed by {name})", retryable=True)
    if done.returncode != 0:
        raise BackendError(STAGE, "rhubarb", f"rhubarb failed (exit {done.returncode}): {failure_reason(done.stderr)}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise BackendError(STAGE, "rhubarb", f"rhubarb printed no valid JSON ({exc}): {done.stdout[:80]!r}") from exc


def failure_reason(log: str) -> str:
    """The reason in Rhubarb's machine-readable log (its "failure" event), else the end of what it printed."""
    for line in reversed(log.splitlines()):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("type") == "failure":
            return str(event.get("reason", "")).replace("\n", " ")
    return log.strip()[-ERROR_TAIL_CHARS:] or "no message"


def parse_rhubarb(document: dict) -> list[VisemeSegment]:
    """Segments from Rhubarb's JSON output, each keeping Rhubarb's own shape.

    Raises:
        ValueError: a cue with a shape Rhubarb does not have, or no cue list at all.
    """
    cues = document.get("mouthCues") if isinstance(document, dict) else None
    if not isinstance(cues, list):
        raise ValueError("Rhubarb's output has no 'mouthCues' list")
    representative = shape_table().representative
    segments = []
    for cue in cues:
        shape = cue["value"]
        if shape not in RHUBARB_SHAPES:
            raise ValueError(f"Rhubarb returned unknown mouth shape {shape!r}")
        segments.append(VisemeSegment(representative[shape], float(cue["start"]), float(cue["end"]), shape))
    return segments
