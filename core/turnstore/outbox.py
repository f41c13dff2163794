"""Writes the database could not take yet: kept in memory, oldest first, and retried in the background.

A write is tried at once while the database is healthy, so a turn is normally stored before the user sees its
costs. Once a write fails because the database is unreachable (down at start, or gone mid-turn), later writes queue
behind it without waiting for the database again, and one daemon thread retries the queue in order with a growing
pause until it drains. A write the database rejects for its content (a bug, not an outage) is logged and dropped, so
one bad row never blocks the rest. Nothing here ever raises into a user's turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.errors import InputError

log = logging.getLogger(__name__)

CAPACITY = 10_000
"""Writes kept while the database is down: about a day of a busy demo (each turn is 1-3 writes, ~2 KB); past this
the oldest is dropped, so memory stays bounded however long the outage."""
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0
"""The pause between retries doubles from the first to the longest, so a database that comes back is used within
half a minute and one that stays down costs a connection attempt every 30 s."""


class StoreUnavailable(Exception):
    """The database cannot be reached (or its schema set up) right now; the message says which and why."""


UNREACHABLE = (StoreUnavailable, OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
"""Errors that mean "try again later" rather than "this write is wrong"."""


class Write(Protocol):
    """One unit of work for the database, applied in one transaction; applying it twice must change nothing."""

    def describe(self) -> str:
        """What it stores, for log lines (e.g. "turn 3f2a… of session abc")."""

    def apply(self, store: Any, conn: Any) -> None:
        """Run the write on ``conn`` (a connection of ``store``, inside its transaction)."""


class Outbox:
    """Applies writes through ``apply`` now or, while the database is unreachable, later and in order."""

    def __init__(self, apply: Callable[[Write], None], *, capacity: int = CAPACITY,
                 first_retry_s: float = FIRST_RETRY_S, max_retry_s: float = MAX_RETRY_S) -> None:
        self._apply = apply
        self._pending: deque[Write] = deque()
        self._capacity = capacity
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._retry_s = first_retry_s
        self._lock = threading.Lock()  # guards the queue and the state below
        self._write_lock = threading.Lock()  # one writer at a time keeps the order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = ""
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Writes waiting for the database."""
        with self._lock:
            return len(self._pending)

    def submit(self, write: Write) -> bool:
        """Store ``write`` now if the database is healthy, else queue it; True when it was stored now.

        Raises only ``InputError`` (the write names something that does not exist, e.g. feedback on an unknown
        turn); any other failure is logged: an unreachable database keeps the write for later, a write the database
        rejects is dropped (a bug must not fail the user's turn).
        """
        with self._lock:
            queued = bool(self._pending)
            if queued:
                self._enqueue(write)
        if queued:
            return False  # the retry thread writes it after the ones ahead of it
        try:
            with self._write_lock:
                self._apply(write)
        except UNREACHABLE as exc:
            self._fail(exc, write)
            with self._lock:
                self._pending.appendleft(write)  # keeps it ahead of writes queued meanwhile
            self._start_retrying()
            return False
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - best effort: the turn goes on without this write
            self.dropped += 1
            log.exception("turn store rejected %s; dropping it", write.describe())
            return False
        return True

    def flush(self) -> int:
        """Try every waiting write now, in order; return how many are still waiting."""
        while True:
            with self._lock:
                if not self._pending:
                    return 0
                write = self._pending[0]
            try:
                with self._write_lock:
                    self._apply(write)
            except UNREACHABLE as exc:
                self._fail(exc, write)
                return self.pending
            except Exception:  # noqa: BLE001 - a write the database rejects must not block the ones behind it
                log.exception("turn store rejected %s; dropping it", write.describe())
            with self._lock:
                if self._pending and self._pending[0] is write:
                    self._pending.popleft()
                remaining = len(self._pending)
            if not remaining:
                log.info("turn store reachable again: every waiting write is stored")
                self.last_error = ""
                self._retry_s = self._first_retry_s

    def _enqueue(self, write: Write) -> None:
        if len(self._pending) >= self._capacity:
            lost = self._pending.popleft()
            self.dropped += 1
            log.error("turn store down too long: %d writes waiting, dropped the oldest (%s)", self._capacity,
                      lost.describe())
        self._pending.append(write)

    def _fail(self, exc: BaseException, write: Write) -> None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if message != self.last_error:
            log.warning("turn store unreachable (%s); keeping %s in memory and retrying", message, write.describe())
        self.last_error = message

    def _start_retrying(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._retry_loop, name="turnstore-retry", daemon=True)
            self._thread.start()

    def _retry_loop(self) -> None:
        while True:
            self._wake.wait(self._retry_s)
            self._wake.clear()
            if self.flush() == 0:
                with self._lock:
                    if not self._pending:
                        self._thread = None
                        return
            else:
                self._retry_s = min(self._retry_s * 2, self._max_retry_s)

    def wait_empty(self, timeout_s: float) -> bool:
        """Block until nothing waits (or the timeout); True when empty. For shutdown and tests."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return not self.pending
