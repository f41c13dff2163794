"""Strict reading of the project's data files: JSON where a key written twice is an error, not a silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ConfigError


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that rejects a key written twice in one JSON object."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json(text: str, where: str) -> Any:
    """Parse JSON text strictly; ``where`` (a file name, a line) starts the ConfigError message."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ConfigError(f"{where}: not valid JSON ({exc})") from exc


def read_json(path: str | Path) -> Any:
    """Read a JSON file strictly.

    Raises:
        ConfigError: the file cannot be read, is not JSON, or writes a key twice in one object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    return parse_json(text, str(path))
