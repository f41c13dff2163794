"""Command line lip-sync that mirrors Rhubarb: ``python -m core.lipsync speech.wav [-d text.txt] [-f json|tsv]``.

It says which timing source made the track: on stderr (``lip-sync source: ...``, with any source that failed and
handed over) and in the JSON's ``metadata.source``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import PipelineError
from core.lipsync.audio import read_audio
from core.lipsync.engine import AUTO_ORDER, LipsyncEngine, create_lipsync
from core.lipsync.rhubarb import RECOGNIZERS
from core.types import Speech, VisemeTrack


def format_tsv(track: VisemeTrack) -> str:
    """Rhubarb's TSV layout: one ``start<TAB>shape`` line per cue, then the end time with the rest shape."""
    lines = [f"{cue.start_s:.2f}\t{cue.shape}" for cue in track.mouth_cues]
    end = track.mouth_cues[-1].end_s if track.mouth_cues else track.duration_s
    lines.append(f"{end:.2f}\tX")
    return "\n".join(lines) + "\n"


def source_line(lipsync, used: str) -> str:
    """``used`` with its description, and for the engine the sources that failed or were not available."""
    sources = lipsync.sources if isinstance(lipsync, LipsyncEngine) else (lipsync,)
    line = next((f"{used} ({s.description})" for s in sources if s.name == used), used)
    if isinstance(lipsync, LipsyncEngine):
        failed = [f"{name} failed: {why}" for name, why in lipsync.failures.items()]
        line += "".join(f"; {item}" for item in [*failed, *filter(None, [lipsync.note])])
    return line


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m core.lipsync", description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path, help="speech recording (WAV, FLAC, OGG...)")
    parser.add_argument("-d", "--dialog", type=Path, help="text file with what is said (improves accuracy)")
    parser.add_argument("-f", "--export-format", choices=("json", "tsv"), default="json")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    parser.add_argument("--source", choices=("auto", *AUTO_ORDER[1:]), default="auto",
                        help="timing source (auto: Rhubarb when installed, else transcript, else audio)")
    parser.add_argument("--rhubarb", default="", help="path of a rhubarb binary (default: AVATAR_RHUBARB_PATH, "
                        "else look on PATH)")
    parser.add_argument("-r", "--recognizer", choices=RECOGNIZERS, default="",
                        help="Rhubarb's recognizer when Rhubarb is the source (default: AVATAR_RHUBARB_RECOGNIZER)")
    args = parser.parse_args(argv)
    try:
        audio, rate = read_audio(args.audio)
        text = args.dialog.read_text(encoding="utf-8") if args.dialog else ""
        lipsync = create_lipsync(args.source, rhubarb_path=args.rhubarb, rhubarb_recognizer=args.recognizer,
                                 listen=not text.strip())  # whisper only stands in for a missing transcript
        track = lipsync.track(Speech(text, audio, rate))
    except (PipelineError, OSError) as exc:
        message = exc.user_message() if isinstance(exc, PipelineError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"lip-sync source: {source_line(lipsync, track.source)}", file=sys.stderr)
    if args.export_format == "json":
        document = track.to_rhubarb(sound_file=str(args.audio))
        document["metadata"]["source"] = track.source
        output = json.dumps(document, indent=2) + "\n"
    else:
        output = format_tsv(track)
    if args.output:
        args.output.write_text(output, encoding="utf-8")
    else:
        sys.stdout.write(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
