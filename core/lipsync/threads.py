"""Lip-sync's matrix products are small (a few hundred frames × tens of features): on a busy machine, OpenBLAS
spreading each over its threads makes them 10-80x slower than one thread (measured here: 19 ms vs 0.25 ms for
350×276 @ 276×24 on 2 loaded cores). ``one_blas_thread`` limits BLAS to one thread while lip-sync runs."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any


@cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager:
    """A context in which numpy's BLAS uses one thread (does nothing when threadpoolctl is missing)."""
    controller = _controller()
    return controller.limit(limits=1, user_api="blas") if controller is not None else nullcontext()
