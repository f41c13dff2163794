"""The turn policy: how many turns run at once, how many one session may have in flight, and where a waiting turn is.

Every event that runs a turn (a typed question, a spoken one, the ``/ask`` API) joins one queue, the UI's
concurrency group ``TURN_GROUP``, whose limit is ``TurnPolicy.limit``: ``AVATAR_TURN_CONCURRENCY``, or by default
derived from the cores and the LLM backend (``default_concurrency``). A local LLM takes the CPU's threads while it
writes and llama.cpp serves one generation at a time, so more turns at once only make each slower; a cloud LLM
leaves the CPU to the voice, so about one turn per core can speak at once.

A session may have ``AVATAR_SESSION_TURNS`` turns waiting or running. In the browser a new question replaces the
session's earlier ones (``enqueue(..., replace=True)`` cancels them, so a superseded turn that reaches the front of
the queue ends at once); an API caller past its limit is refused with ``BusyError``. Tickets also tell a waiting
user their place in line and an estimate from the recent turns' durations (``place``).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from statistics import median

from core.config import AppConfig
from core.errors import BusyError

TURN_GROUP = "turn"
"""The concurrency id every turn-running event shares."""
RECENT_TURNS = 20
"""The estimate of a wait uses the median duration of this many recent turns."""
CLOUD_TURNS_PER_CORE = 1
"""With a cloud LLM a turn's CPU work is its voice (Piper uses about one core while it speaks): one turn per core."""


def default_concurrency(cores: int, llm_cpu_threads: int) -> int:
    """How many turns should run at once: one for every ``llm_cpu_threads`` cores when the LLM runs here (at least
    one), else ``CLOUD_TURNS_PER_CORE`` per core (``llm_cpu_threads`` 0: a remote LLM)."""
    if llm_cpu_threads > 0:
        return max(1, cores // llm_cpu_threads)
    return max(1, cores * CLOUD_TURNS_PER_CORE)


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """Where a waiting turn stands: how many turns are ahead of it (running ones that hold every slot included),
    and about how long until it starts (None before any turn has finished)."""

    ahead: int
    wait_s: float | None

    def describe(self) -> str:
        """What the waiting user reads, e.g. "2 turns ahead of yours; about 20 s"."""
        if self.ahead == 0:
            return "Your turn is next."
        turns = "1 turn is" if self.ahead == 1 else f"{self.ahead} turns are"
        estimate = f"; about {round(self.wait_s)} s" if self.wait_s is not None else ""
        return f"{turns} ahead of yours{estimate}."


@dataclass(eq=False)
class TurnTicket:
    """One turn from the moment it is asked for until it ends: its session, its cancel event and its times."""

    session_id: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cancel: threading.Event = field(default_factory=threading.Event)
    enqueued_s: float = field(default_factory=time.monotonic)
    started_s: float | None = None

    @property
    def superseded(self) -> bool:
        """Cancelled before or while it ran (a newer question of the session, a barge-in)."""
        return self.cancel.is_set()


class TurnPolicy:
    """The shared limits, and the tickets of the turns in flight (thread-safe).

    Responsibilities: admit a session's turn or refuse it (``enqueue``), mark it running and finished (``start``,
    ``finish``), say where a waiting ticket stands (``place``), and sum the state up for the status panel.
    """

    def __init__(self, limit: int, session_limit: int) -> None:
        self.limit = limit
        self.session_limit = session_limit
        self._tickets: list[TurnTicket] = []  # in the order they were enqueued
        self._durations: deque[float] = deque(maxlen=RECENT_TURNS)
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: AppConfig, llm_cpu_threads: int, cores: int | None = None) -> TurnPolicy:
        """The configured limits; a turn concurrency of 0 is derived from the cores and the CPU threads the LLM
        takes while it writes (``LLMBackend.cpu_threads``)."""
        limit = config.limits.turn_concurrency or default_concurrency(cores or os.cpu_count() or 1, llm_cpu_threads)
        return cls(limit, config.limits.session_turns)

    def enqueue(self, session_id: str, *, replace: bool = False) -> TurnTicket:
        """A ticket for a new turn of ``session_id``; ``replace`` cancels the session's earlier turns first.

        Raises:
            BusyError: without ``replace``, the session already has its limit of turns waiting or running.
        """
        with self._lock:
            mine = [t for t in self._tickets if t.session_id == session_id and not t.superseded]
            if replace:
                for ticket in mine:
                    ticket.cancel.set()
            elif len(mine) >= self.session_limit:
                raise BusyError(
                    f"This session already has {len(mine)} question{'s' if len(mine) > 1 else ''} waiting or being "
                    f"answered (the limit is {self.session_limit}); ask again when the answer has come.")
            ticket = TurnTicket(session_id)
            self._tickets.append(ticket)
            return ticket

    def start(self, ticket: TurnTicket) -> None:
        """The ticket's turn leaves the queue and runs."""
        with self._lock:
            ticket.started_s = time.monotonic()

    def finish(self, ticket: TurnTicket, *, answered: bool = False) -> None:
        """The ticket's turn ended (answered, failed or cancelled); an answered one counts towards the estimate."""
        with self._lock:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
            if answered and ticket.started_s is not None:
                self._durations.append(time.monotonic() - ticket.started_s)

    def withdraw(self, session_id: str) -> None:
        """Cancel every turn of a session and forget the ones still waiting (the session closed, or the UI
        dropped its queued events): a waiting ticket that will never run must not hold a place in line."""
        with self._lock:
            for ticket in [t for t in self._tickets if t.session_id == session_id]:
                ticket.cancel.set()
                if ticket.started_s is None:
                    self._tickets.remove(ticket)

    def place(self, ticket: TurnTicket) -> QueuePlace:
        """Where a waiting ticket stands: the live tickets enqueued before it, less the free slots."""
        with self._lock:
            before = self._tickets[: self._tickets.index(ticket)] if ticket in self._tickets else []
            running = sum(1 for t in self._tickets if t.started_s is not None)
            waiting_ahead = sum(1 for t in before if t.started_s is None and not t.superseded)
            ahead = max(0, waiting_ahead + running - self.limit + 1)
            typical = median(self._durations) if self._durations else None
        wait_s = None if typical is None else typical * math.ceil(ahead / self.limit)
        return QueuePlace(ahead, wait_s)

    def status(self) -> str:
        """One line for the status panel, e.g. "2 at a time; 1 running, 3 waiting; one per session"."""
        with self._lock:
            running = sum(1 for t in self._tickets if t.started_s is not None)
            waiting = len(self._tickets) - running
        per_session = "one" if self.session_limit == 1 else str(self.session_limit)
        return f"{self.limit} at a time; {running} running, {waiting} waiting; {per_session} per session"
