"""The app's turn handlers: a question joins the turn queue (after interrupting the avatar), waits with its place in
line shown, runs through the pipeline streaming chat text and avatar clips, and ends as an answer or as a message
saying what failed. ``ask`` is the same turn for API callers.

Each handler returns (or yields) exactly the outputs ``app.py`` wires it to; the output order is in ``TURN_OUTPUTS``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from components.avatar import avatar_clip, avatar_frame
from components.voice_input import read_utterance
from core.best_effort import best_effort
from core.characters import CharacterBook
from core.disk_budget import FolderBudget
from core.errors import PipelineError
from core.experiments import ExperimentRunner
from core.feedback import AnswerKeys
from core.pipeline import Pipeline
from core.turn_policy import TurnPolicy
from core.types import ChatMessage, ReplyDelta, SpokenClip, TurnComplete, TurnOptions, UserTurn
from ui.live_turn import LiveTurn, LiveTurns
from ui.presentation import PENDING, api_details, api_lipsync, avatar_state, latency_frame, turn_note, with_failure

log = logging.getLogger(__name__)

TURN_OUTPUTS = ("chat", "avatar", "question", "history", "emotion", "latency", "queue_note")
"""What a running turn updates, in the order ``respond_typed``/``respond_spoken`` yield them."""
QUEUED_OUTPUTS = ("chat", "history", "avatar", "queue_note", "ticket")
"""What ``queue_turn`` returns: the trimmed chat and history, the avatar's state, the note and the ticket id."""
WAITING_NOTE = "⏳ {place} The avatar answers in turn; you can keep typing."


def session_of(request: gr.Request | None) -> str:
    """The Gradio session a request belongs to (each browser tab, each ``gradio_client.Client``)."""
    return getattr(request, "session_hash", None) or "anonymous"


class Conversation:
    """Runs the sessions' turns under one turn policy.

    Responsibilities: put a question in line (``queue_turn``, ``take_utterance``) after interrupting the session's
    current turn, show its place; run it when the queue lets it (``respond_typed``/``respond_spoken``), turning
    pipeline events into chat and avatar updates and a failure into its message; serve ``/ask``; forget a closed
    session.
    """

    def __init__(self, pipeline: Pipeline, experiments: ExperimentRunner, characters: CharacterBook,
                 policy: TurnPolicy, answers: AnswerKeys, uploads: FolderBudget) -> None:
        self.pipeline = pipeline
        self.experiments = experiments
        self.characters = characters
        self.policy = policy
        self.answers = answers
        self.uploads = uploads
        self.live = LiveTurns()

    def options(self, session_id: str, character: str | None) -> TurnOptions:
        """The session's experiment options, speaking as ``character`` (raises ConfigError if it cannot speak)."""
        check = self.characters.check(character)
        return self.characters.options_for(check, self.experiments.options_for(session_id), self.pipeline.config)

    # -- before the queue (these run at once, outside the turn group) -----------------------------------------

    def interrupt(self, heard: dict | None, chat: list[dict], history: list[dict], request: gr.Request) -> tuple:
        """Barge-in: cancel the session's turn and keep only what the avatar said (``heard`` comes from the JS
        hook); the chat and history trimmed, or unchanged."""
        session_id = session_of(request)
        turn = self.live.latest(session_id)
        trimmed = turn.interrupt(heard, chat, history) if turn else None
        return trimmed if trimmed else (gr.skip(), gr.skip())

    def speech_started(self, heard: dict | None, chat: list[dict], history: list[dict], request: gr.Request
                       ) -> tuple:
        """The user started to speak: interrupt, and withdraw the session's waiting turns (the UI drops them)."""
        trimmed = self.interrupt(heard, chat, history, request)
        self.policy.withdraw(session_of(request))
        return (*trimmed, avatar_state("listening"), "")

    def queue_turn(self, heard: dict | None, chat: list[dict], history: list[dict], request: gr.Request) -> tuple:
        """A new question: interrupt the avatar, then take a place in the turn queue (replacing any earlier
        question of this session still waiting); the avatar waits and the note says where the turn stands."""
        chat, history = self.interrupt(heard, chat, history, request)
        ticket = self.policy.enqueue(session_of(request), replace=True)
        self.live.add(ticket)
        place = self.policy.place(ticket)
        if place.ahead == 0:
            return chat, history, avatar_state("thinking"), "", ticket.id
        return chat, history, avatar_state("waiting"), WAITING_NOTE.format(place=place.describe()), ticket.id

    def take_utterance(self, heard: dict | None, chat: list[dict], history: list[dict], request: gr.Request,
                       evt: gr.EventData) -> tuple:
        """A finished spoken question: queue it as ``queue_turn`` does and hand its text or recording on."""
        try:
            text, audio_path = read_utterance(evt._data)
        except PipelineError as exc:
            gr.Warning(exc.user_message())
            return (*self.interrupt(heard, chat, history, request), "", "", avatar_state("idle"), "", "")
        chat, history, avatar, note, ticket_id = self.queue_turn(heard, chat, history, request)
        return chat, history, text or "", audio_path or "", avatar, note, ticket_id

    # -- in the turn group ------------------------------------------------------------------------------------

    def respond_typed(self, text: str | None, chat: list[dict], history: list[dict], ticket_id: str,
                      character: str, request: gr.Request) -> Iterator[tuple]:
        """A typed question, answered by ``character``."""
        yield from self._run(text, None, chat, history, ticket_id, session_of(request), character)

    def respond_spoken(self, text: str | None, audio_path: str | None, chat: list[dict], history: list[dict],
                       ticket_id: str, character: str, request: gr.Request) -> Iterator[tuple]:
        """A spoken question: the browser's transcript, or a recording for the server to transcribe."""
        yield from self._run(text or None, audio_path or None, chat, history, ticket_id, session_of(request),
                             character, spoken=True)

    def read_ahead(self, text: str | None, history: list[dict], character: str, request: gr.Request) -> None:
        """The question box changed: the model reads the question so far (``Pipeline.read_ahead``); never a
        message, since it is only advice."""
        options = best_effort("choosing the options for reading ahead",
                              lambda: self.options(session_of(request), character), None)
        if options is not None:
            self.pipeline.read_ahead([ChatMessage(m["role"], m["content"]) for m in history], text, options)

    def read_ahead_heard(self, history: list[dict], character: str, request: gr.Request, evt: gr.EventData) -> None:
        """The browser's transcript of a question still being spoken: read ahead as for a typed one."""
        text = (evt._data or {}).get("text")
        self.read_ahead(text if isinstance(text, str) else None, history, character, request)

    def _run(self, text: str | None, audio_path: str | None, chat: list[dict], history: list[dict],
             ticket_id: str, session_id: str, character: str, *, spoken: bool = False) -> Iterator[tuple]:
        """Run one queued turn, streaming chat text and avatar clips; errors become a message and change nothing.

        A turn superseded while it waited changes nothing at all; one interrupted while it runs stops quietly
        (``LiveTurn.interrupt`` already fixed the chat).
        """
        skip = gr.skip()
        turn = self.live.get(ticket_id)
        if turn is None or turn.ticket.superseded:
            if turn is not None:
                self._end(turn, answered=False)
            yield tuple(skip for _ in TURN_OUTPUTS)
            return
        self.policy.start(turn.ticket)
        answered = False
        try:
            payload: dict[str, Any] = avatar_state("thinking")
            chat = list(chat)
            yield chat, payload, skip, history, skip, skip, ""
            reply_text = ""
            messages = [ChatMessage(m["role"], m["content"]) for m in history]
            options = self.options(session_id, character)
            for event in self.pipeline.run_turn(messages, text=text, audio_path=audio_path, cancel=turn.cancel,
                                                session_id=session_id, options=options):
                if turn.was_interrupted:
                    return
                if isinstance(event, UserTurn):
                    heard = f"🎤 {event.text}" if spoken or event.transcript else event.text
                    chat += [{"role": "user", "content": heard}, {"role": "assistant", "content": PENDING}]
                    turn.asked(event.text, len(chat) - 1)
                    yield chat, skip, "", history, skip, skip, skip
                elif isinstance(event, ReplyDelta):
                    reply_text += event.text
                    chat[-1] = {"role": "assistant", "content": reply_text}
                    yield chat, skip, skip, history, skip, skip, skip  # the avatar is unchanged: do not resend clips
                elif isinstance(event, SpokenClip):
                    if not turn.spoke(event.turn_id, event.text):
                        return
                    clip = avatar_clip(event.wav_path, event.track, offset_s=event.offset_s, emotion=event.emotion)
                    clips = [*payload["clips"], clip] if payload["turn_id"] == event.turn_id else [clip]
                    payload = avatar_frame(event.turn_id, "speaking", clips)
                    yield chat, payload, skip, history, skip, skip, skip
                elif isinstance(event, TurnComplete):
                    if not turn.completed():
                        return
                    answered = True
                    chat[-1] = {"role": "assistant", "content": event.reply.text + turn_note(event)}
                    history = [*history, {"role": "user", "content": turn.question},
                               {"role": "assistant", "content": event.reply.text}]
                    self.answers.remember(session_id, turn.chat_index, event.turn_key)
                    label = f"{event.emotion.label} ({event.emotion.confidence:.0%})"
                    idle = skip if payload["clips"] else avatar_state("idle")  # clips already sent play on
                    yield chat, idle, skip, history, label, latency_frame(event.timings_s), skip
        except PipelineError as exc:
            if turn.was_interrupted:
                return
            log.warning("turn failed: %s", exc.user_message())
            gr.Warning(exc.user_message())
            yield with_failure(chat, exc.user_message()), avatar_state("idle"), skip, history, skip, skip, skip
        finally:
            self._end(turn, answered=answered)

    def _end(self, turn: LiveTurn, *, answered: bool) -> None:
        self.policy.finish(turn.ticket, answered=answered)
        self.live.ended(turn)
        best_effort("keeping Gradio's file folder under its cap", self.uploads.trim, None)

    # -- the API ----------------------------------------------------------------------------------------------

    def ask(self, text: str | None, audio_path: str | None, character: str | None,
            request: gr.Request) -> tuple[str, str, dict, dict]:
        """API: one whole turn, spoken by ``character`` (a name from ``data/characters.json``; empty: the default).
        Returns the reply text, its audio (WAV), its lip-sync track and details.

        The lip-sync track is Rhubarb's JSON plus ``oculus`` viseme keyframes; details hold the emotion (label, all
        scores), the latency breakdown, the sources, whether the cache answered, the cost under each preset, the
        ``turn_key`` to rate the answer with (``/feedback``), the experiment variant the caller's session runs, and
        the character and voice that spoke. A session past its limit of turns in flight (``AVATAR_SESSION_TURNS``)
        is refused with a clear error.
        """
        session_id = session_of(request)
        answered = False
        try:
            options = self.options(session_id, character)
            ticket = self.policy.enqueue(session_id)
            self.policy.start(ticket)
            try:
                done = list(self.pipeline.run_turn([], text=text, audio_path=audio_path, cancel=ticket.cancel,
                                                   session_id=session_id, options=options))[-1]
                answered = True
            finally:
                self.policy.finish(ticket, answered=answered)
                best_effort("keeping Gradio's file folder under its cap", self.uploads.trim, None)
        except PipelineError as exc:
            raise gr.Error(exc.user_message()) from exc
        details = api_details(done, options, self.characters.get(character).name)
        return done.reply.text, done.wav_path, api_lipsync(done), details

    def forget(self, session_id: str) -> None:
        """Drop a closed session's turns and its place in the queue."""
        self.policy.withdraw(session_id)
        self.live.forget(session_id)
