"""Characters: the data file's validation, which characters can speak now and why not, and the turn options."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from avatar_assets.builder.params import load_params
from core import characters as ch
from core.characters import CharacterBook
from core.config import load_config
from core.errors import ConfigError
from core.tts import edge
from core.types import TurnOptions


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def edge_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point Edge's reachability check at a closed local port: a real refused connection, whatever the network."""
    monkeypatch.setattr(edge, "EDGE_SERVICE", ("127.0.0.1", closed_port()))


def write_book(tmp_path: Path, mutate=None) -> Path:
    data = json.loads(ch.CHARACTERS_PATH.read_text())
    if mutate:
        mutate(data)
    path = tmp_path / "characters.json"
    path.write_text(json.dumps(data))
    return path


def test_the_default_character_is_a_man_with_the_mans_voice() -> None:
    book = CharacterBook.load()
    sam = book.default
    assert sam.name == "Sam" and sam.glb.name == "sam.glb" and sam.glb.is_file()
    assert load_params("sam").body.gender == 1.0
    check = book.check("")
    assert check.available and check.voice == "piper" and check.why_not() == ""
    assert book.get("ava").name == "Ava" and book.get("AVA").voices == ("edge/en-US-JennyNeural", "kokoro/af_heart")
    assert load_params("ava").out_path == book.get("ava").glb


def test_unknown_name_lists_the_characters() -> None:
    with pytest.raises(ConfigError, match=r"no character called 'Bob'.*\['Sam', 'Ava'\]"):
        CharacterBook.load().get("Bob")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["characters"][1]["voices"].append("festival/slt"), "unknown voice backend 'festival'"),
    (lambda d: d["characters"][0].update(glb="avatar_assets/nobody.glb"), "nobody.glb does not exist"),
    (lambda d: d["characters"][1].update(name="sam"), "names must be unique"),
    (lambda d: d.update(default="Zoe"), "'default' must name one of"),
    (lambda d: d["characters"][0].pop("persona"), r"missing keys \['persona'\]"),
    (lambda d: d["characters"][0].update(voices=[]), "non-empty list of TTS descriptors"),
    (lambda d: d.update(extra=1), "expected exactly the keys"),
])
def test_bad_data_files_fail_clearly(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CharacterBook.load(write_book(tmp_path, mutate))


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "characters.json"
    path.write_text(ch.CHARACTERS_PATH.read_text().replace('"default": "Sam",', '"default": "Sam", "default": "Ava",'))
    with pytest.raises(ConfigError, match="duplicate key 'default'"):
        CharacterBook.load(path)


def test_a_character_without_a_usable_voice_says_why(edge_offline: None) -> None:
    check = CharacterBook.load().check("Ava")
    assert not check.available and check.voice is None
    assert len(check.problems) == 2
    assert check.problems[0].startswith("edge/en-US-JennyNeural: ")
    assert "cannot be reached" in check.problems[0] or "not installed" in check.problems[0]
    assert check.problems[1].startswith("kokoro/af_heart: ")
    assert check.why_not().startswith("Ava is not available: edge/en-US-JennyNeural")
    with pytest.raises(ConfigError, match="Ava is not available"):
        CharacterBook.options_for(check, TurnOptions(), load_config({}))


def test_options_speak_as_the_character() -> None:
    book = CharacterBook.load()
    config = load_config({})
    options = book.options_for(book.check("Sam"), TurnOptions(experiment="x", variant="a"), config)
    assert options.tts == "piper" and options.experiment == "x" and options.variant == "a"
    assert options.system_prompt.startswith("You are Sam,") and options.system_prompt.endswith(book.default.persona)
    variant = TurnOptions(tts="edge/en-US-GuyNeural", system_prompt="Be brief.")
    assert book.options_for(book.check("Sam"), variant, config) == variant  # the experiment's own choices win
    custom = load_config({"AVATAR_SYSTEM_PROMPT": "You are {name}, a pirate."})
    assert book.options_for(book.check("Sam"), TurnOptions(), custom).system_prompt == ""  # the configured prompt


def test_the_prompts_to_prepare_are_the_ones_turns_start_with_the_default_character_first() -> None:
    book = CharacterBook.load()
    config = load_config({})
    prompts = book.system_prompts(config)
    assert prompts[0] == book.options_for(book.check(book.default.name), TurnOptions(), config).system_prompt
    assert len(prompts) == len(book.names) and all(p.startswith("You are ") for p in prompts)
    custom = load_config({"AVATAR_SYSTEM_PROMPT": "You are {name}, a pirate."})
    assert book.system_prompts(custom) == [custom.llm.system_prompt]
