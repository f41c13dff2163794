"""What the app keeps about each session's turns while they wait, run and play, so that a barge-in can cancel one and
keep only what the user heard.

A ``LiveTurn`` is changed by two worker threads (the turn that fills it, the barge-in that interrupts it), so every
change and read goes through its lock. ``LiveTurns`` finds a turn by its ticket id (what the queued event gets) and
a session's latest turn (what a barge-in interrupts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.turn_policy import TurnTicket

log = logging.getLogger(__name__)

INTERRUPTED = "*(interrupted)*"
"""Appended in the chat to what the avatar said of an interrupted reply."""


@dataclass
class LiveTurn:
    """One turn of a session: its ticket (and so its cancel event), where its reply is in the chat and what its clips
    said, in playing order."""

    ticket: TurnTicket
    question: str = ""
    chat_index: int | None = None  # the assistant message of this turn in the chat
    turn_id: str | None = None  # the avatar turn id of its clips
    clip_texts: list[str] = field(default_factory=list)
    complete: bool = False  # the whole reply is already in the history
    interrupted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def cancel(self) -> threading.Event:
        """Set to stop the turn's generation."""
        return self.ticket.cancel

    def asked(self, question: str, chat_index: int) -> None:
        """The pipeline read the question; its answer goes to ``chat_index`` in the chat."""
        with self._lock:
            self.question, self.chat_index = question, chat_index

    def spoke(self, turn_id: str, text: str) -> bool:
        """A clip of the reply is on its way to the avatar; False when the turn was interrupted meanwhile."""
        with self._lock:
            if self.interrupted:
                return False
            self.turn_id = turn_id
            self.clip_texts.append(text)
            return True

    def completed(self) -> bool:
        """The whole reply went into the history; False when the turn was interrupted first (then it did not)."""
        with self._lock:
            if self.interrupted:
                return False
            self.complete = True
            return True

    @property
    def was_interrupted(self) -> bool:
        with self._lock:
            return self.interrupted

    def interrupt(self, heard: Mapping[str, Any] | None, chat: list[dict], history: list[dict]
                  ) -> tuple[list[dict], list[dict]] | None:
        """Cancel the turn if it is waiting, generating or playing; return the chat and history trimmed to what was
        heard, or None when there is nothing to interrupt.

        ``heard`` is the avatar's report (``avatarState.interrupt()`` in avatar.js): the turn it was playing, whether
        it was still playing, and how many clips had started.
        """
        heard = heard or {}
        with self._lock:
            ours = heard.get("turn_id") == self.turn_id
            if self.interrupted or (self.complete and not (ours and heard.get("playing"))):
                return None
            self.interrupted = True
            self.cancel.set()
            n_heard = min(int(heard.get("clips_heard") or 0), len(self.clip_texts)) if ours else 0
            said = " ".join(t.strip() for t in self.clip_texts[:n_heard])
            chat = list(chat)
            if self.chat_index is not None and self.chat_index < len(chat):
                chat[self.chat_index] = {"role": "assistant", "content": f"{said} {INTERRUPTED}".strip()}
            history = list(history[:-2] if self.complete else history)
            if said:
                history += [{"role": "user", "content": self.question}, {"role": "assistant", "content": said}]
            log.info("turn %s interrupted: %d of %d clips heard", self.turn_id, n_heard, len(self.clip_texts))
        return chat, history


class LiveTurns:
    """Every session's turns that have not ended, by ticket id, and each session's latest one (thread-safe)."""

    def __init__(self) -> None:
        self._by_ticket: dict[str, LiveTurn] = {}
        self._latest: dict[str, LiveTurn] = {}
        self._lock = threading.Lock()

    def add(self, ticket: TurnTicket) -> LiveTurn:
        """A new turn for the ticket, now its session's latest."""
        turn = LiveTurn(ticket)
        with self._lock:
            self._by_ticket[ticket.id] = turn
            self._latest[ticket.session_id] = turn
        return turn

    def get(self, ticket_id: str | None) -> LiveTurn | None:
        """The turn of a ticket, None once it ended (or for an unknown id)."""
        with self._lock:
            return self._by_ticket.get(ticket_id or "")

    def latest(self, session_id: str) -> LiveTurn | None:
        """The session's latest turn (kept after it ended: its clips may still be playing)."""
        with self._lock:
            return self._latest.get(session_id)

    def ended(self, turn: LiveTurn) -> None:
        """The turn's event is over; it stays the session's latest until a newer one."""
        with self._lock:
            self._by_ticket.pop(turn.ticket.id, None)

    def forget(self, session_id: str) -> None:
        """Drop a closed session's turns."""
        with self._lock:
            self._latest.pop(session_id, None)
            for ticket_id in [k for k, t in self._by_ticket.items() if t.ticket.session_id == session_id]:
                del self._by_ticket[ticket_id]
