"""Avatar Assistant's web app: Gradio Blocks wiring the pipeline to the chat, the microphone and the 3D avatar."""

from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from components.avatar import Avatar
from components.character_picker import CharacterPicker
from components.voice_input import VoiceInput
from core.characters import CharacterBook
from core.config import AppConfig, load_config
from core.errors import PipelineError
from core.experiments import ExperimentBook, ExperimentRunner
from core.experiments.report import experiment_choices, experiment_report, report_panel
from core.feedback import COMMENT_PROMPTS, AnswerKeys, feedback_markdown, rating_of, recent_feedback_table
from core.pipeline import Pipeline
from core.turn_policy import TURN_GROUP, TurnPolicy
from core.turnstore import StoreUnavailable
from ui.conversation import Conversation, session_of
from ui.uploads import gradio_upload_budget

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
AVATAR_INTERRUPT_JS = "(heard, chat, history) => [window.avatarState?.interrupt?.() ?? null, chat, history]"
"""Runs in the browser before a barge-in: stops the avatar at once and reports what of its turn was heard."""


# -- the app ------------------------------------------------------------------------------------------------------


def build_app(pipeline: Pipeline, experiments: ExperimentRunner | None = None,
              characters: CharacterBook | None = None, policy: TurnPolicy | None = None) -> gr.Blocks:
    """Create the Blocks UI around a pipeline (no model is loaded here); ``experiments`` assigns sessions to the
    running A/B experiment's variants (default: the configured experiments file); ``characters`` are the faces and
    voices to pick from (default: ``data/characters.json``); ``policy`` limits the turns running at once (default:
    from the configuration, the cores and the LLM)."""

    experiments = experiments or ExperimentRunner(ExperimentBook.load(pipeline.config.experiments), pipeline.turn_log)
    policy = policy or TurnPolicy.for_config(pipeline.config, pipeline.stages.llm.cpu_threads)
    answers = AnswerKeys()
    characters = characters or CharacterBook.load()
    picker = CharacterPicker(characters)
    conversation = Conversation(pipeline, experiments, characters, policy, answers,
                                gradio_upload_budget(pipeline.config))

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
        conversation.forget(session_id)
        answers.forget(session_id)
        experiments.forget(session_id)

    def status_markdown() -> str:
        lines = [s.line() for s in pipeline.statuses()]
        lines += [f"Turn store: {pipeline.turn_log.store.status()}", f"Experiments: {experiments.status()}",
                  f"Turns: {policy.status()}"]
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
                    queue_note = gr.Markdown(elem_id="queue-note")  # a waiting turn's place in line
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
                    ticket = gr.State("")  # the queued turn's ticket id, from the barge-in step to the turn
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
        # stops playback at once and reports what was heard; the first step runs outside the turn queue, cancels the
        # generation, trims the chat and history, and takes a place in line (the avatar waits, the note says where).
        # Then the turn runs in the one concurrency group every turn-running event shares, `/ask` included.
        outputs = [chat, avatar, question, history, emotion_box, latency_plot, queue_note]
        # trigger_mode "multiple": a new question's turn must start even while this session's previous turn is still
        # ending (Gradio's default, "once", silently drops a dependency triggered while its last run is in flight:
        # under load, a question sent to interrupt the avatar was never answered). The turn queue orders them.
        in_turn = {"concurrency_id": TURN_GROUP, "concurrency_limit": policy.limit, "api_visibility": "private",
                   "trigger_mode": "multiple",
                   "show_progress_on": [chat]}  # the waiting note and the waiting avatar stay in plain view
        barge_in = {"js": AVATAR_INTERRUPT_JS, "concurrency_limit": None, "api_visibility": "private"}
        barge_inputs = [heard, chat, history]
        queued = [chat, history, avatar, queue_note, ticket]
        turns = [
            trigger(conversation.queue_turn, barge_inputs, queued, **barge_in).then(
                conversation.respond_typed, [question, chat, history, ticket, character], outputs, **in_turn)
            for trigger in (send.click, question.submit)
        ]
        # While a question is typed, the model reads it so far (advice only: a busy model skips it); "always_last"
        # keeps only the latest text when keystrokes come faster than it reads.
        # The same for a question being spoken, from the browser's interim transcript.
        reading_ahead = {"outputs": None, "trigger_mode": "always_last", "show_progress": "hidden",
                         "api_visibility": "private"}
        question.input(conversation.read_ahead, [question, history, character], **reading_ahead)
        voice.heard_so_far(conversation.read_ahead_heard, [history, character], **reading_ahead)
        turns.append(
            voice.utterance(conversation.take_utterance, barge_inputs,
                            [chat, history, spoken_text, spoken_audio, avatar, queue_note, ticket], **barge_in).then(
                conversation.respond_spoken, [spoken_text, spoken_audio, chat, history, ticket, character], outputs,
                **in_turn))
        voice.speech_start(conversation.speech_started, barge_inputs, [chat, history, avatar, queue_note],
                           **barge_in)
        # Speech start drops the running turn's output at once (and `speech_started` withdraws the session's waiting
        # turns, which Gradio drops). A new question needs no such cancel: the first step has already set the old
        # turn's cancel event, so it ends at its next step; a cancel on the same click could drop the new turn.
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
        gr.Button(visible=False).click(conversation.ask, api_inputs, api_outputs, api_name="ask",
                                       concurrency_id=TURN_GROUP, concurrency_limit=policy.limit)
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
    characters = CharacterBook.load()
    for status in pipeline.warm_up(characters.system_prompts(config)):
        log.info("%s", status.line())
    pipeline.turn_log.store.connect()
    log.info("turn store: %s; %s", pipeline.turn_log.store.status(), experiments.status())
    policy = TurnPolicy.for_config(config, pipeline.stages.llm.cpu_threads)
    log.info("turn policy: %s", policy.status())
    demo = build_app(pipeline, experiments, characters, policy=policy)
    try:
        demo.queue(default_concurrency_limit=1).launch(server_name=config.host, server_port=config.port)
    finally:
        pipeline.turn_log.store.close()


if __name__ == "__main__":
    main()
