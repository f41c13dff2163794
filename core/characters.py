"""Characters: a face (avatar GLB) and a voice that belong together, with a name and a persona line.

They are defined in ``data/characters.json`` and validated on load: an unknown voice backend, a missing GLB, a
duplicate name or a default that names no character is a ``ConfigError``. A character is offered only when one of
its voices is usable right now (``CharacterBook.check``); otherwise the check says why each voice is not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.config import DATA_DIR, PROJECT_ROOT, AppConfig
from core.datafiles import read_json
from core.errors import ConfigError
from core.persona import default_persona, default_system_prompt
from core.tts import TTS_BACKENDS
from core.types import TurnOptions

CHARACTERS_PATH = DATA_DIR / "characters.json"
CHARACTER_KEYS = ("name", "glb", "voices", "description", "persona")
BOOK_KEYS = ("default", "characters")


@dataclass(frozen=True, slots=True)
class Character:
    """One character: ``voices`` are TTS descriptors ("piper", "edge/en-US-JennyNeural") in order of preference."""

    name: str
    glb: Path
    voices: tuple[str, ...]
    description: str
    persona: str

    def system_prompt(self) -> str:
        """The project's persona spoken as this character: its name filled in, its persona line added."""
        return f"{default_persona().system_prompt(self.name)} {self.persona}"


@dataclass(frozen=True, slots=True)
class CharacterCheck:
    """Whether a character can speak now: the voice it will use, or why none of its voices is usable."""

    character: Character
    voice: str | None
    problems: tuple[str, ...]

    @property
    def available(self) -> bool:
        return self.voice is not None

    def why_not(self) -> str:
        """One sentence saying why the character is not offered (empty when it is)."""
        if self.available:
            return ""
        return f"{self.character.name} is not available: " + "; ".join(self.problems) + "."


def voice_problem(descriptor: str) -> str | None:
    """Why a voice descriptor cannot speak right now (None: it can)."""
    backend, _, voice = descriptor.partition("/")
    reason = TTS_BACKENDS[backend].unavailable_reason(voice)
    return f"{descriptor}: {reason}" if reason else None


def _character(entry: Any, where: str, root: Path) -> Character:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: each character must be an object")
    entry = {k: v for k, v in entry.items() if not k.startswith("_")}
    missing, unknown = sorted(set(CHARACTER_KEYS) - set(entry)), sorted(set(entry) - set(CHARACTER_KEYS))
    if missing or unknown:
        raise ConfigError(f"{where}: missing keys {missing}, unknown keys {unknown}")
    for key in ("name", "glb", "description", "persona"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    name = entry["name"].strip()
    voices = entry["voices"]
    if not isinstance(voices, list) or not voices or not all(isinstance(v, str) and v for v in voices):
        raise ConfigError(f"{where} ({name}): 'voices' must be a non-empty list of TTS descriptors")
    for voice in voices:
        backend = voice.partition("/")[0]
        if backend not in TTS_BACKENDS:
            raise ConfigError(f"{where} ({name}): unknown voice backend {backend!r} in {voice!r}; "
                              f"valid backends: {sorted(TTS_BACKENDS)}")
    glb = root / entry["glb"]
    if not glb.is_file():
        raise ConfigError(f"{where} ({name}): the avatar GLB {glb} does not exist "
                          "(build it with python -m avatar_assets.build_avatar)")
    return Character(name, glb, tuple(voices), entry["description"].strip(), entry["persona"].strip())


class CharacterBook:
    """The characters, by name (case-insensitive), and the default one.

    Responsibilities: load and validate the data file, look characters up, check whether one can speak now, and
    turn a chosen character into the turn options that give it its voice and persona.
    """

    def __init__(self, characters: list[Character], default: str) -> None:
        self._by_key = {c.name.lower(): c for c in characters}
        self.default = self.get(default)

    @classmethod
    def load(cls, path: Path = CHARACTERS_PATH, root: Path = PROJECT_ROOT) -> CharacterBook:
        """Read ``path``; GLB paths are relative to ``root``.

        Raises:
            ConfigError: unreadable or invalid file (each message names the file and the character).
        """
        data = read_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object at the top level")
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        if set(data) != set(BOOK_KEYS):
            raise ConfigError(f"{path}: expected exactly the keys {list(BOOK_KEYS)}, got {sorted(data)}")
        entries = data["characters"]
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: 'characters' must be a non-empty list")
        characters = [_character(e, f"{path.name} characters[{i}]", root) for i, e in enumerate(entries)]
        names = [c.name.lower() for c in characters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"{path}: character names must be unique, repeated: {duplicates}")
        if not isinstance(data["default"], str) or data["default"].strip().lower() not in names:
            raise ConfigError(f"{path}: 'default' must name one of {[c.name for c in characters]}")
        return cls(characters, data["default"])

    @property
    def names(self) -> list[str]:
        """Every character's name, in file order."""
        return [c.name for c in self._by_key.values()]

    def get(self, name: str | None) -> Character:
        """The character called ``name`` (any case); empty: the default.

        Raises:
            ConfigError: no character has that name (the message lists them).
        """
        key = (name or "").strip().lower()
        if not key:
            return self.default
        if key not in self._by_key:
            raise ConfigError(f"There is no character called {name!r}; choose one of {self.names}.")
        return self._by_key[key]

    def check(self, name: str | None) -> CharacterCheck:
        """Find the first usable voice of a character, or every reason none is."""
        character = self.get(name)
        problems = []
        for voice in character.voices:
            problem = voice_problem(voice)
            if problem is None:
                return CharacterCheck(character, voice, tuple(problems))
            problems.append(problem)
        return CharacterCheck(character, None, tuple(problems))

    @staticmethod
    def options_for(check: CharacterCheck, options: TurnOptions, config: AppConfig) -> TurnOptions:
        """Turn options that speak as the character: its voice and persona, unless the experiment variant sets a
        voice or a prompt of its own, or AVATAR_SYSTEM_PROMPT replaced the persona."""
        if not check.available:
            raise ConfigError(check.why_not())
        return replace(options, tts=options.tts or check.voice or "",
                       system_prompt=options.system_prompt or _persona_prompt(check.character, config))

    def system_prompts(self, config: AppConfig) -> list[str]:
        """The system prompts the characters' turns start with, the default character's first (what the LLM
        prepares its knowledge-base documents for: a prepared state only serves a prompt that starts the same)."""
        characters = [self.default, *(c for c in self._by_key.values() if c is not self.default)]
        prompts = [_persona_prompt(c, config) or config.llm.system_prompt for c in characters]
        return list(dict.fromkeys(prompts))


def _persona_prompt(character: Character, config: AppConfig) -> str:
    """The character's own system prompt, or "" when AVATAR_SYSTEM_PROMPT replaced the persona (turns then use the
    configured prompt)."""
    return character.system_prompt() if config.llm.system_prompt == default_system_prompt() else ""
