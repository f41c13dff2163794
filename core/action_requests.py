"""Requests that the assistant act ("book me a table", "email this to my colleague"), which it cannot do.

The assistant only talks. Without a word about it, a model asked to act either claimed it had ("Sure, I'll switch
to the Microsoft Jenny voice.") or, because the documents never mention the thing asked for, said "I don't know;
my documents don't say.". A request addressed to the assistant (``data/action_requests.json``) therefore gets a
note after it, in place of the coverage note, telling the model to say it can't and to offer answers instead (asked
to say how the user can do it, the model invented ways); a model that cannot follow notes gives the fixed reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.config import DATA_DIR
from core.datafiles import read_json
from core.errors import ConfigError
from core.retrieval.vocabulary import NOTE_FORM

ACTION_REQUESTS_PATH = DATA_DIR / "action_requests.json"


@dataclass(frozen=True, slots=True)
class ActionRequests:
    """The patterns of a request to act, the note a model gets after one, and the reply instead of the model."""

    patterns: tuple[re.Pattern[str], ...]
    note: str
    reply: str

    def matches(self, message: str) -> bool:
        """Whether ``message`` asks the assistant to do something itself."""
        return any(p.search(message) for p in self.patterns)


def load_action_requests(path: Path = ACTION_REQUESTS_PATH) -> ActionRequests:
    """Read and validate the action-request data.

    Raises:
        ConfigError: the file is missing or malformed, a pattern is not a regular expression, or the note is not
            one parenthesised line (``NOTE_FORM``).
    """
    data = read_json(path)
    try:
        requests = ActionRequests(tuple(re.compile(p, re.IGNORECASE) for p in data["patterns"]), data["note"],
                                  data["reply"])
    except (KeyError, TypeError, re.error) as exc:
        raise ConfigError(f"{path}: cannot read the action requests ({type(exc).__name__}: {exc})") from exc
    if not requests.patterns or not NOTE_FORM.fullmatch(requests.note) or not requests.reply.strip():
        raise ConfigError(f"{path}: needs patterns, a note that is one parenthesised line, and a reply")
    return requests


@lru_cache(maxsize=1)
def action_requests() -> ActionRequests:
    """The project's action requests, read once."""
    return load_action_requests()
