"""The three kinds of write the turn store takes — a turn, a rating, an experiment assignment — each idempotent,
so a retry after a lost acknowledgement stores nothing twice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select

from core.errors import InputError
from core.turnstore.base import TurnStore
from core.turnstore.schema import assignments, feedback, turn_costs, turn_timings, turns


class UnknownTurn(InputError):
    """Feedback names a turn key the store has never seen."""


@dataclass(frozen=True)
class TurnWrite:
    """One turn: its ``turns`` row, its timings and its cost rows (``turn_id`` is filled in here)."""

    row: Mapping[str, Any]
    timings_s: Mapping[str, float]
    costs: Sequence[Mapping[str, Any]] = ()

    @property
    def key(self) -> str:
        return str(self.row["turn_key"])

    def describe(self) -> str:
        return f"turn {self.key[:8]} of session {self.row['session_id']}"

    def apply(self, store: TurnStore, conn: Connection) -> None:
        inserted = conn.execute(
            store.insert(turns).values(**self.row).on_conflict_do_nothing(index_elements=["turn_key"])
            .returning(turns.c.id)
        ).scalar()
        if inserted is None:
            return  # stored by an earlier attempt whose acknowledgement was lost
        if self.timings_s:
            conn.execute(turn_timings.insert(), [{"turn_id": inserted, "name": name, "seconds": float(seconds)}
                                                 for name, seconds in self.timings_s.items()])
        if self.costs:
            conn.execute(turn_costs.insert(), [{**cost, "turn_id": inserted} for cost in self.costs])


@dataclass(frozen=True)
class FeedbackWrite:
    """A thumbs up (+1) or down (-1) on a turn, or its withdrawal (``rating`` None); ``comment`` None keeps the
    stored comment."""

    turn_key: str
    session_id: str
    rating: int | None
    ts: float
    comment: str | None = None

    def describe(self) -> str:
        return f"feedback on turn {self.turn_key[:8]}"

    def apply(self, store: TurnStore, conn: Connection) -> None:
        turn_id = conn.execute(select(turns.c.id).where(turns.c.turn_key == self.turn_key)).scalar()
        if turn_id is None:
            raise UnknownTurn(f"No turn has the key {self.turn_key!r}: rate a turn_key that /ask returned.")
        if self.rating is None:
            conn.execute(delete(feedback).where(feedback.c.turn_id == turn_id))
            return
        values = {"turn_id": turn_id, "ts": self.ts, "session_id": self.session_id, "rating": self.rating,
                  "comment": self.comment or ""}
        update = {name: values[name] for name in ("ts", "session_id", "rating")}
        if self.comment is not None:
            update["comment"] = self.comment
        conn.execute(store.insert(feedback).values(**values)
                     .on_conflict_do_update(index_elements=["turn_id"], set_=update))


@dataclass(frozen=True)
class AssignmentWrite:
    """A session's variant in an experiment; the first one stored for the session stands."""

    experiment: str
    session_id: str
    variant: str
    ts: float

    def describe(self) -> str:
        return f"assignment of session {self.session_id} to {self.experiment}/{self.variant}"

    def apply(self, store: TurnStore, conn: Connection) -> None:
        conn.execute(store.insert(assignments).values(experiment=self.experiment, session_id=self.session_id,
                                                      variant=self.variant, ts=self.ts)
                     .on_conflict_do_nothing(index_elements=["experiment", "session_id"]))
