"""Avatar Assistant's web app: Gradio Blocks wiring the pipeline to the chat, the microphone and the 3D avatar."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

from components.avatar import Avatar, avatar_clip, avatar_frame, emotion_payload, track_payload
from components.character_picker import CharacterPicker
from components.voice_input import VoiceInput, read_utterance
from core.characters import CharacterBook
from core.config import AppConfig, load_config
from core.errors import PipelineError
from core.experiments import ExperimentBook, ExperimentRunner
from core.experiments.report import experiment_choices, experiment_report, report_panel
from core.feedback import COMMENT_PROMPTS, AnswerKeys, feedback_markdown, rating_of, recent_feedback_table
from core.pipeline import Pipeline
from core.turnstore import StoreUnavailable
from core.types import ChatMessage, ReplyDelta, SpokenClip, TurnComplete, TurnOptions, UserTurn

log = logging.getLogger("avatar_assistant")

TITLE = "Avatar Assistant"
INTRO = ("Ask a question by typing or with the microphone: the avatar answers aloud, offline, on the CPU. "
         "Speak or send a new question while it talks to interrupt it.")
EXAMPLES = [
    "Hello! Who are you?",
    "How does the lip-sync work?",
    "What does a turn cost compared with the original architecture?",
    "Can it run without internet?",
]
LATENCY_LABELS = {
    "asr_s": "speech recognition",
    "retrieval_s": "retrieval",
    "llm_first_token_s": "LLM first token",
    "tts_first_s": "first clip TTS",
    "first_audio_s": "time to first audio",
    "llm_total_s": "LLM total",
    "tts_s": "TTS total",
    "lipsync_s": "lip-sync total",
    "total_s": "turn total",
}
"""The latency breakdown shown after each turn, in pipeline order."""
INTERRUPTED = "*(interrupted)*"
AVATAR_INTERRUPT_JS = "(heard, chat, history) => [window.avatarState?.interrupt?.() ?? null, chat, history]"
"""Runs in the browser before a barge-in: stops the avatar at once and reports what of its turn was heard."""


# -- what the chat, the panels and the API show ------------------------------------------------------------------


def turn_note(done: TurnComplete) -> str:
    """The small print under an answer: sources, a cache hit, and what the turn cost."""
    notes = []
    if done.reply.notice:
        notes.append(f"⚠️ {done.reply.notice}")
    if done.reply.route:
        notes.append(f"Model: {done.reply.route}")
    if done.passages:
        notes.append("Sources: " + "; ".join(dict.fromkeys(p.citation() for p in done.passages)))
    if done.cache != "miss":
        notes.append(f"Answered from the cache ({done.cache} match): no LLM or TTS work.")
    if done.costs_usd:
        costs = done.costs_usd
        notes.append(
            f"Cost of this turn: ${costs.get('actual', 0):.4f} as run here · optimised cloud stack "
            f"${costs.get('optimised', 0):.4f} · original architecture ${costs.get('original', 0):.4f}"
        )
    return "".join(f"\n\n<sub>{note}</sub>" for note in notes)


def latency_frame(timings: Mapping[str, float]) -> pd.DataFrame:
    """The turn's latency breakdown as rows for a bar chart."""
    rows = [(label, round(timings[key], 3)) for key, label in LATENCY_LABELS.items() if key in timings]
    return pd.DataFrame(rows, columns=["stage", "seconds"])


def avatar_state(state: str) -> dict[str, Any]:
    """An avatar update that only changes its state (listening, thinking, idle)."""
    return avatar_frame(f"state-{state}", state)


@dataclass
class LiveTurn:
    """A session's latest turn, kept so that a barge-in can cancel it and keep only what the user heard."""

    cancel: threading.Event = field(default_factory=threading.Event)
    question: str = ""
    chat_index: int | None = None  # the assistant message of this turn in the chat
    turn_id: str | None = None  # the avatar turn id of its clips
    clip_texts: list[str] = field(default_factory=list)  # the text of each clip, in playing order
    complete: bool = False  # the whole reply is already in the history
    interrupted: bool = False

    def interrupt(self, heard: Mapping[str, Any] | None, chat: list[dict], history: list[dict]
                  ) -> tuple[list[dict], list[dict]] | None:
        """Cancel the turn if it is still generating or playing; return the chat and history trimmed to what was heard.

        ``heard`` is the avatar's report (``avatarState.interrupt()`` in avatar.js): the turn it was playing, whether it
        was still playing, and how many clips had started. Returns None when there is nothing to interrupt.
        """
        heard = heard or {}
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


# -- the app ------------------------------------------------------------------------------------------------------


def build_app(pipeline: Pipeline, experiments: ExperimentRunner | None = None,
              characters: CharacterBook | None = None) -> gr.Blocks:
    """Create the Blocks UI around a pipeline (no model is loaded here); ``experiments`` assigns sessions to the
    running A/B experiment's variants (default: the configured experiments file); ``characters`` are the faces and
    voices to pick from (default: ``data/characters.json``)."""

    live: dict[str, LiveTurn] = {}
    """Each session's latest turn (its cancel event and what it has said so far), for barge-in."""
    experiments = experiments or ExperimentRunner(ExperimentBook.load(pipeline.config.experiments), pipeline.turn_log)
    answers = AnswerKeys()
    characters = characters or CharacterBook.load()
    picker = CharacterPicker(characters)

    def session_of(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "anonymous"

    def turn_options(session_id: str, character: str | None) -> TurnOptions:
        """The session's experiment options, speaking as ``character`` (raises ConfigError if it cannot speak)."""
        check = characters.check(character)
        return characters.options_for(check, experiments.options_for(session_id), pipeline.config)

    def run(text: str | None, audio_path: str | None, chat: list[dict], history: list[dict], session_id: str,
            character: str, *, spoken: bool = False) -> Iterator[tuple]:
        """Run one turn, streaming chat text and avatar clips; errors become a message and change nothing.

        The turn stops quietly once a barge-in has interrupted it (``LiveTurn.interrupt`` already fixed the chat).
        """
        turn = live[session_id] = LiveTurn()
        payload: dict[str, Any] = avatar_state("thinking")
        chat = list(chat)
        skip = gr.skip()
        yield chat, payload, skip, history, skip, skip
        messages = [ChatMessage(m["role"], m["content"]) for m in history]
        reply_text = ""
        try:
            for event in pipeline.run_turn(messages, text=text, audio_path=audio_path, cancel=turn.cancel,
                                           session_id=session_id, options=turn_options(session_id, character)):
                if turn.interrupted:
                    return
                if isinstance(event, UserTurn):
                    turn.question = event.text
                    heard = f"🎤 {event.text}" if spoken or event.transcript else event.text
                    chat += [{"role": "user", "content": heard}, {"role": "assistant", "content": "…"}]
                    turn.chat_index = len(chat) - 1
                    yield chat, skip, "", history, skip, skip
                elif isinstance(event, ReplyDelta):
                    reply_text += event.text
                    chat[-1] = {"role": "assistant", "content": reply_text}
                    yield chat, skip, skip, history, skip, skip  # the avatar is unchanged: do not resend its clips
                elif isinstance(event, SpokenClip):
                    turn.turn_id = event.turn_id
                    turn.clip_texts.append(event.text)
                    clip = avatar_clip(event.wav_path, event.track, offset_s=event.offset_s, emotion=event.emotion)
                    clips = [*payload["clips"], clip] if payload["turn_id"] == event.turn_id else [clip]
                    payload = avatar_frame(event.turn_id, "speaking", clips)
                    yield chat, payload, skip, history, skip, skip
                elif isinstance(event, TurnComplete):
                    chat[-1] = {"role": "assistant", "content": event.reply.text + turn_note(event)}
                    history = [*history, {"role": "user", "content": turn.question},
                               {"role": "assistant", "content": event.reply.text}]
                    turn.complete = True
                    answers.remember(session_id, turn.chat_index, event.turn_key)
                    label = f"{event.emotion.label} ({event.emotion.confidence:.0%})"
                    idle = skip if payload["clips"] else avatar_state("idle")  # clips already sent play on
                    yield chat, idle, skip, history, label, latency_frame(event.timings_s)
        except PipelineError as exc:
            if turn.interrupted:
                return
            log.warning("turn failed: %s", exc)
            gr.Warning(exc.user_message())
            if chat and chat[-1]["content"] == "…":
                chat[-1] = {"role": "assistant", "content": f"⚠️ {exc.user_message()}"}
            else:
                chat.append({"role": "assistant", "content": f"⚠️ {exc.user_message()}"})
            yield chat, avatar_state("idle"), skip, history, skip, skip

    def respond_typed(text: str | None, chat: list[dict], history: list[dict], character: str,
                      request: gr.Request) -> Iterator[tuple]:
        """A typed question."""
        yield from run(text, None, chat, history, session_of(request), character)

    def respond_spoken(text: str | None, audio_path: str | None, chat: list[dict], history: list[dict],
                       character: str, request: gr.Request) -> Iterator[tuple]:
        """A spoken question: the browser's transcript, or a recording for the server to transcribe."""
        yield from run(text or None, audio_path or None, chat, history, session_of(request), character, spoken=True)

    def interrupt(heard: dict | None, chat: list[dict], history: list[dict], request: gr.Request) -> tuple:
        """Barge-in: cancel the session's turn and keep only what the avatar said (``heard`` comes from the JS hook)."""
        turn = live.get(session_of(request))
        trimmed = turn.interrupt(heard, chat, history) if turn else None
        return trimmed if trimmed else (gr.skip(), gr.skip())

    def take_utterance(heard: dict | None, chat: list[dict], history: list[dict], request: gr.Request,
                       evt: gr.EventData) -> tuple:
        """A finished spoken question: interrupt the avatar, then hand the text or recording to the turn."""
        chat, history = interrupt(heard, chat, history, request)
        try:
            text, audio_path = read_utterance(evt._data)
        except PipelineError as exc:
            gr.Warning(exc.user_message())
            return chat, history, "", ""
        return chat, history, text or "", audio_path or ""

    def ask(text: str | None, audio_path: str | None, character: str | None,
            request: gr.Request) -> tuple[str, str, dict, dict]:
        """API: one whole turn, spoken by ``character`` (a name from ``data/characters.json``; empty: the default).
        Returns the reply text, its audio (WAV), its lip-sync track and details.

        The lip-sync track is Rhubarb's JSON plus ``oculus`` viseme keyframes; details hold the emotion (label, all
        scores), the latency breakdown, the sources, whether the cache answered, the cost under each preset, the
        ``turn_key`` to rate the answer with (``/feedback``), the experiment variant the caller's session runs, and
        the character and voice that spoke.
        """
        session_id = session_of(request)
        try:
            options = turn_options(session_id, character)
            done = list(pipeline.run_turn([], text=text, audio_path=audio_path, session_id=session_id,
                                          options=options))[-1]
        except PipelineError as exc:
            raise gr.Error(exc.user_message()) from exc
        lipsync = {**done.track.to_rhubarb(done.wav_path), "oculus": track_payload(done.track)["keyframes"]}
        details = {
            **emotion_payload(done.emotion),
            "timings_s": dict(done.timings_s),
            "sources": [p.citation() for p in done.passages],
            "cache": done.cache,
            "costs_usd": dict(done.costs_usd),
            "turn_key": done.turn_key,
            "experiment": options.experiment or None,
            "variant": options.variant or None,
            "character": characters.get(character).name,
            "voice": options.tts,
        }
        return done.reply.text, done.wav_path, lipsync, details

    def feedback(turn_key: str, rating: str, comment: str | None, request: gr.Request) -> dict:
        """API: rate an answer. ``turn_key`` comes from ``/ask``'s details; ``rating`` is "up", "down", or "" to
        withdraw it; ``comment`` is optional. Returns what was stored and whether it is stored yet ("stored") or
        kept until the turn store is reachable again ("queued")."""
        try:
            stored = pipeline.turn_log.record_feedback(turn_key, (rating or "").strip().lower(), comment or None,
                                                       session_id=session_of(request))
        except PipelineError as exc:
            raise gr.Error(exc.user_message()) from exc
        return {"turn_key": turn_key.strip(), "rating": (rating or "").strip().lower() or None,
                "comment": comment or None, "status": "stored" if stored else "queued"}

    def report(name: str) -> dict:
        """API: an experiment's report (per variant numbers with 95% intervals, the tests, the verdict) as JSON;
        ``name`` empty: the running experiment."""
        name = (name or "").strip() or (experiments.experiment.name if experiments.experiment else "")
        try:
            return experiment_report(pipeline.turn_log, experiments.book, name).to_dict()
        except PipelineError as exc:
            raise gr.Error(exc.user_message()) from exc
        except StoreUnavailable as exc:
            raise gr.Error(str(exc)) from exc

    def rate(evt: gr.LikeData, request: gr.Request) -> tuple:
        """Thumbs up or down under an answer in the chat: store it, and offer a comment box for that answer."""
        session_id = session_of(request)
        turn_key = answers.key_for(session_id, evt.index)
        if turn_key is None:
            gr.Info("Only finished answers can be rated.")
            return gr.update(visible=False), None
        rating = rating_of(evt.liked)
        try:
            pipeline.turn_log.record_feedback(turn_key, rating, session_id=session_id)
        except PipelineError as exc:
            gr.Warning(exc.user_message())
            return gr.update(visible=False), None
        if not rating:
            return gr.update(visible=False), None
        prompt = gr.update(visible=True, label=COMMENT_PROMPTS[rating], value="")
        return prompt, {"turn_key": turn_key, "rating": rating}

    def comment_on(text: str, rated: dict | None, request: gr.Request) -> tuple:
        """The optional comment on the answer just rated."""
        if not rated or not (text or "").strip():
            return gr.update(visible=False), None
        try:
            pipeline.turn_log.record_feedback(rated["turn_key"], rated["rating"], text.strip(),
                                              session_id=session_of(request))
        except PipelineError as exc:
            gr.Warning(exc.user_message())
            return gr.skip(), rated
        gr.Info("Thanks: your comment is saved with the answer.")
        return gr.update(visible=False, value=""), None

    def forget_session(request: gr.Request) -> None:
        """Drop a closed session's turn state."""
        session_id = session_of(request)
        live.pop(session_id, None)
        answers.forget(session_id)
        experiments.forget(session_id)

    def status_markdown() -> str:
        lines = [s.line() for s in pipeline.statuses()]
        lines += [f"Turn store: {pipeline.turn_log.store.status()}", f"Experiments: {experiments.status()}"]
        return "\n".join(f"- {line}" for line in lines)

    def experiment_panel(name: str | None) -> tuple[pd.DataFrame, str]:
        """The chosen experiment's report: a table per variant and the verdict."""
        return report_panel(pipeline.turn_log, experiments.book, name)

    def dashboard(conversations_per_day: float, experiment: str | None) -> tuple:
        """Latency percentiles, cost per turn and the emotion mix from the turn log, with a monthly projection;
        ratings and comments; the chosen experiment's report. A turn store that is down is said, not raised."""
        log_ = pipeline.turn_log
        choices, chosen = experiment_choices(experiments.book, log_, experiment)
        try:
            latency = log_.latency_percentiles("1min")
            latency_long = latency.melt(id_vars=["bucket", "turns"], var_name="measure", value_name="seconds")
            summary = log_.session_summary(None, conversations_per_day=conversations_per_day)
            charts = (latency_long, log_.cost_over_time("1min"), log_.emotion_mix(), summary.round(4),
                      feedback_markdown(log_), recent_feedback_table(log_))
        except StoreUnavailable as exc:
            gr.Warning(str(exc))
            return (*(gr.skip() for _ in range(6)), f"⚠️ {exc}", gr.skip(), gr.skip(), gr.skip())
        return (*charts, "", gr.update(choices=choices, value=chosen), *experiment_panel(chosen))

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        history = gr.State([])
        with gr.Tab("Talk"):
            with gr.Row():
                with gr.Column(scale=5):
                    avatar = Avatar(elem_id="avatar", glb_path=characters.default.glb, glb_name=characters.default.name,
                                    glbs=[characters.get(name).glb for name in characters.names])
                    character = gr.State(characters.default.name)
                    character_pick = gr.Dropdown(picker.choices(), value=characters.default.name, label="Character",
                                                 elem_id="character")
                    character_note = gr.Markdown(picker.note(characters.default.name), elem_id="character-note")
                    emotion_box = gr.Textbox(label="Emotion of the reply", interactive=False, elem_id="emotion")
                with gr.Column(scale=6):
                    chat = gr.Chatbot(label="Conversation", height=380, elem_id="chat", buttons=["copy_all"])
                    rated = gr.State(None)  # the answer just rated, for its optional comment
                    comment = gr.Textbox(visible=False, max_lines=3, elem_id="feedback-comment",
                                         placeholder="Press Enter to send")
                    with gr.Row():
                        question = gr.Textbox(placeholder="Ask me something…", show_label=False, scale=5,
                                              elem_id="question", max_lines=4)
                        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    gr.Examples(EXAMPLES, question, label="Try")
                    voice = VoiceInput(pause_s=pipeline.config.asr.vad_pause_s,
                                       max_audio_s=pipeline.config.asr.max_audio_s, elem_id="voice")
                    heard = gr.JSON(visible=False)  # the avatar's barge-in report, filled by AVATAR_INTERRUPT_JS
                    spoken_text = gr.Textbox(visible=False)
                    spoken_audio = gr.Textbox(visible=False)
            with gr.Row():
                with gr.Column():
                    latency_plot = gr.BarPlot(x="stage", y="seconds", title="Last turn: where the time went",
                                              sort=None, height=240, y_lim=[0, None], elem_id="latency")
                with gr.Column():
                    gr.Markdown("### Backends")
                    status_box = gr.Markdown(elem_id="status")
        with gr.Tab("Dashboard") as dashboard_tab:
            per_day = gr.Number(100, label="Conversations per day (5 turns each) for the monthly projection")
            refresh = gr.Button("Refresh")
            with gr.Row():
                latency_chart = gr.LinePlot(x="bucket", y="seconds", color="measure", title="Latency percentiles")
                cost_chart = gr.LinePlot(x="bucket", y="mean_usd", color="preset", title="Mean cost per turn (USD)")
            with gr.Row():
                emotion_chart = gr.BarPlot(x="emotion", y="count", color="side", title="Emotion mix")
                summary_table = gr.Dataframe(label="All turns: totals and monthly projection per price preset")
            store_notice = gr.Markdown(elem_id="store-notice")
            gr.Markdown("### Ratings")
            feedback_summary = gr.Markdown(elem_id="feedback-summary")
            feedback_table = gr.Dataframe(label="Latest ratings", elem_id="feedback-table", wrap=True)
            gr.Markdown("### Experiments")
            experiment_pick = gr.Dropdown(label="Experiment", choices=[], elem_id="experiment-pick")
            experiment_table = gr.Dataframe(label="Per variant: estimate [95% interval] (n)",
                                            elem_id="experiment-table", wrap=True)
            experiment_verdict = gr.Markdown(elem_id="experiment-verdict")

        # Every new question, and the user starting to speak, first interrupts the avatar (barge-in): the JS hook
        # stops playback at once and reports what was heard; `interrupt` runs outside the turn queue, cancels the
        # generation and trims the chat and history; Gradio drops the running turn's remaining output.
        outputs = [chat, avatar, question, history, emotion_box, latency_plot]
        barge_in = {"js": AVATAR_INTERRUPT_JS, "concurrency_limit": None, "api_visibility": "private"}
        barge_io = ([heard, chat, history], [chat, history])
        turns = [
            trigger(interrupt, *barge_io, **barge_in).then(
                respond_typed, [question, chat, history, character], outputs, api_visibility="private")
            for trigger in (send.click, question.submit)
        ]
        turns.append(
            voice.utterance(take_utterance, barge_io[0], [*barge_io[1], spoken_text, spoken_audio], **barge_in).then(
                respond_spoken, [spoken_text, spoken_audio, chat, history, character], outputs,
                api_visibility="private"))
        voice.speech_start(interrupt, *barge_io, **barge_in).then(
            lambda: avatar_state("listening"), None, avatar, api_visibility="private")
        # Speech start drops the running turn's output at once. A new question needs no such cancel: `interrupt`
        # has already set the turn's cancel event, so the old turn ends at its next step; a cancel on the same click
        # could race with, and drop, the new turn itself.
        voice.speech_start(None, None, None, cancels=turns)
        dash_out = [latency_chart, cost_chart, emotion_chart, summary_table, feedback_summary, feedback_table,
                    store_notice, experiment_pick, experiment_table, experiment_verdict]
        for trigger in (refresh.click, dashboard_tab.select):
            trigger(dashboard, [per_day, experiment_pick], dash_out, api_visibility="private")
        experiment_pick.input(experiment_panel, experiment_pick, [experiment_table, experiment_verdict],
                              api_visibility="private")
        character_pick.input(picker.pick, [character_pick, character],
                             [character, avatar, character_pick, character_note], api_visibility="private")
        chat.like(rate, None, [comment, rated], api_visibility="private")
        comment.submit(comment_on, [comment, rated], [comment, rated], api_visibility="private")

        api_inputs = [gr.Textbox(visible=False), gr.Audio(visible=False, type="filepath"),
                      gr.Textbox(visible=False, label="character", value="")]
        api_outputs = [gr.Textbox(visible=False), gr.Audio(visible=False, type="filepath"), gr.JSON(visible=False),
                       gr.JSON(visible=False)]
        gr.Button(visible=False).click(ask, api_inputs, api_outputs, api_name="ask")
        feedback_inputs = [gr.Textbox(visible=False, label="turn_key"), gr.Textbox(visible=False, label="rating"),
                           gr.Textbox(visible=False, label="comment")]
        gr.Button(visible=False).click(feedback, feedback_inputs, gr.JSON(visible=False), api_name="feedback")
        gr.Button(visible=False).click(report, gr.Textbox(visible=False, label="experiment"), gr.JSON(visible=False),
                                       api_name="experiment_report")
        demo.load(status_markdown, None, status_box, api_visibility="private")
        demo.unload(forget_session)
    return demo


def main(config: AppConfig | None = None) -> None:
    """Load the models, then serve the app."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config or load_config()
    pipeline = Pipeline(config)
    experiments = ExperimentRunner(ExperimentBook.load(config.experiments), pipeline.turn_log)  # bad files fail here
    for status in pipeline.warm_up():
        log.info("%s", status.line())
    pipeline.turn_log.store.connect()
    log.info("turn store: %s; %s", pipeline.turn_log.store.status(), experiments.status())
    demo = build_app(pipeline, experiments)
    try:
        demo.queue(default_concurrency_limit=1).launch(server_name=config.host, server_port=config.port)
    finally:
        pipeline.turn_log.store.close()


if __name__ == "__main__":
    main()
