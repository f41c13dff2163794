"""Ratings from the chat: which logged turn each rated answer is, what a like event means, and the dashboard's
feedback panel. No UI library here: ``app.py`` passes in what Gradio's like event carries."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd

from core.analytics import TurnLog

COMMENT_PROMPTS = {"up": "What was good about this answer? (optional)", "down": "What was wrong? (optional)"}
"""The comment box's label after a thumbs up or down."""
REPLY_PREVIEW_CHARS = 120
"""How much of each rated answer the dashboard's table shows."""


class AnswerKeys:
    """Per session, the turn key of each answer in the chat (by its message index), so a rating finds its turn."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()

    def remember(self, session_id: str, message_index: int | None, turn_key: str) -> None:
        if message_index is None or not turn_key:
            return
        with self._lock:
            self._keys.setdefault(session_id, {})[message_index] = turn_key

    def key_for(self, session_id: str, message_index: Any) -> str | None:
        """The turn key of the answer at ``message_index`` (Gradio gives an int, or [row, column] for tuples)."""
        index = message_index[0] if isinstance(message_index, list | tuple) else message_index
        with self._lock:
            return self._keys.get(session_id, {}).get(index) if isinstance(index, int) else None

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._keys.pop(session_id, None)


def rating_of(liked: Any) -> str:
    """A like event's value as a stored rating: True → "up", False → "down", anything else (undone) → ""."""
    if liked is True:
        return "up"
    if liked is False:
        return "down"
    return ""


def feedback_markdown(turn_log: TurnLog) -> str:
    """The dashboard's one-line summary of ratings so far."""
    summary = turn_log.feedback_summary().iloc[0]
    answers, rated, up, down, comments = (int(summary[k]) for k in ("answers", "rated", "up", "down", "comments"))
    if not rated:
        return f"No answer rated yet ({answers} answers so far): use the thumbs under an answer in the chat."
    return (f"**{rated}** of {answers} answers rated: {up} thumbs up, {down} thumbs down — "
            f"**{summary['up_rate']:.0%}** thumbs up; {comments} with a comment.")


def recent_feedback_table(turn_log: TurnLog) -> pd.DataFrame:
    """The latest ratings, with the question and the start of the answer, for the dashboard."""
    frame = turn_log.recent_feedback()
    frame["rated_at"] = frame["rated_at"].dt.strftime("%Y-%m-%d %H:%M")
    frame["reply"] = frame["reply"].fillna("").str.slice(0, REPLY_PREVIEW_CHARS)
    return frame[["rated_at", "rating", "comment", "question", "reply", "variant"]]
