"""Who the assistant is: the system prompt from ``data/persona.json``, with the assistant's name filled in.

Every LLM backend gets this prompt (a cloud model and the local one alike), then a line saying which model answers
and where it runs (``runtime_note``), then the knowledge-base passages (``GeneratingLLM._prompt``). The module
lives outside ``core.llm`` because the configuration reads it for its default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import ConfigError

PERSONA_PATH = Path(__file__).resolve().parent.parent / "data" / "persona.json"
"""``data/persona.json`` (not via ``core.config.DATA_DIR``: the configuration imports this module for its default)."""
NAME_FIELD = "{name}"


@dataclass(frozen=True, slots=True)
class Persona:
    """The default name and the system prompt template (with ``{name}``)."""

    name: str
    template: str

    def system_prompt(self, name: str = "") -> str:
        """The system prompt for an assistant called ``name`` (the persona's own name if empty)."""
        return self.template.replace(NAME_FIELD, name.strip() or self.name)


def load_persona(path: Path = PERSONA_PATH) -> Persona:
    """Read and validate the persona file.

    Raises:
        ConfigError: the file is missing or malformed, or the prompt never uses ``{name}``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name, lines = data["name"], data["system_prompt"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the persona ({type(exc).__name__}: {exc})") from exc
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}: 'name' must be a non-empty string")
    if not isinstance(lines, list) or not lines or not all(isinstance(line, str) and line.strip() for line in lines):
        raise ConfigError(f"{path}: 'system_prompt' must be a list of non-empty lines")
    template = " ".join(line.strip() for line in lines)
    if NAME_FIELD not in template:
        raise ConfigError(f"{path}: the system prompt must say the assistant's name with {NAME_FIELD}")
    return Persona(name.strip(), template)


@lru_cache(maxsize=1)
def default_persona() -> Persona:
    """The project's persona, read once."""
    return load_persona()


def default_system_prompt() -> str:
    """The system prompt with the persona's own name."""
    return default_persona().system_prompt()


def runtime_note(runtime: str) -> str:
    """The sentence that tells the model what it runs on, e.g. "Your answers are written by ... on this computer"."""
    return f"Your answers are written by {runtime}."
