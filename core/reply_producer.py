"""The LLM side of a turn, run in its own thread: stream the reply, pass its deltas and finished clauses to the
speaking side through a queue, then the Reply, or the failure as a typed error naming its stage and backend.

Whatever happens, the stream is closed before the thread ends (a cancelled generation stops and frees what its
backend holds, e.g. the local model's lock) and ``END`` is the last item put.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator

from core.clauses import split_clauses
from core.errors import BackendError, PipelineError
from core.llm.base import STAGE as LLM_STAGE
from core.types import Reply, ReplyDelta

log = logging.getLogger(__name__)

END = object()
"""Marks the end of the producer's queue."""
EMPTY_REPLY = "it wrote no answer; please ask again"


def produce_reply(stream: Iterator[str | Reply], backend: str, *, streaming: bool, out: queue.Queue,
                  cancel: threading.Event) -> None:
    """Consume ``stream`` (text deltas, then one Reply) from ``backend``: put each ``ReplyDelta``, each clause to
    speak (the whole reply as one when not ``streaming``), the Reply, then ``END``; stop early once ``cancel`` is
    set. An empty reply, and any exception, are put as a ``PipelineError`` instead of the Reply."""
    reply_box: list[Reply] = []

    def deltas() -> Iterator[str]:
        for item in stream:
            if cancel.is_set():
                return
            if isinstance(item, Reply):
                reply_box.append(item)
            else:
                out.put(ReplyDelta(item))
                yield item

    try:
        with contextlib.closing(stream):  # closed now, not when garbage-collected
            pieces = split_clauses(deltas()) if streaming else ["".join(deltas()).strip()]
            for clause in filter(None, pieces):
                out.put(clause)
        if reply_box and not reply_box[0].text.strip() and not cancel.is_set():
            raise BackendError(LLM_STAGE, backend, EMPTY_REPLY, retryable=True)
        if reply_box:
            out.put(reply_box[0])
    except PipelineError as exc:
        out.put(exc)
    except Exception as exc:  # noqa: BLE001 - a crash in this thread is reported as what it was, with its stage
        log.exception("LLM producer (%s) crashed", backend)
        out.put(BackendError(LLM_STAGE, backend, f"{type(exc).__name__}: {exc}"))
    finally:
        out.put(END)
