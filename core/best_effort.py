"""Best-effort side effects of a turn (caching it, logging it, pricing it, tidying disk): a failure is logged with
its traceback and the turn goes on, so a reply the user has heard is never lost to bookkeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def best_effort(what: str, action: Callable[[], T], fallback: T) -> T:
    """Run ``action`` and return its result; on any exception log "``what`` failed" and return ``fallback``.

    Only for work the turn does not need to succeed: the caller decides what the turn looks like without it.
    """
    try:
        return action()
    except Exception:  # noqa: BLE001 - the point of this helper: bookkeeping never fails the user's turn
        log.exception("%s failed; the turn goes on without it", what)
        return fallback
