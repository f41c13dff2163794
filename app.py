"""Avatar Assistant's web app: Gradio Blocks wiring the pipeline to the chat, the microphone and the 3D avatar."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import gradio as gr
import pandas as pd

from components.avatar import Avatar, avatar_clip, avatar_frame, emotion_payload, track_payload
from core.config import AppConfig, load_config
from core.errors import PipelineError
from core.pipeline import Pipeline
from core.types import ChatMessage, ReplyDelta, SpokenClip, TurnComplete, UserTurn

log = logging.getLogger("avatar_assistant")

TITLE = "Avatar Assistant"
INTRO = "Ask a question by typing or with the microphone: the avatar answers aloud, offline, on the CPU."
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


# -- what the chat, the panels and the API show ------------------------------------------------------------------


def turn_note(done: TurnComplete) -> str:
    """The small print under an answer: sources, a cache hit, and what the turn cost."""
    notes = []
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


# -- the app ------------------------------------------------------------------------------------------------------


def build_app(pipeline: Pipeline) -> gr.Blocks:
    """Create the Blocks UI around a pipeline (no model is loaded here)."""

    def respond(
        text: str | None, audio_path: str | None, chat: list[dict], history: list[dict], request: gr.Request
    ) -> Iterator[tuple]:
        """Run one turn, streaming chat text and avatar clips; errors become a message and change nothing."""
        payload: dict[str, Any] = avatar_state("thinking")
        chat = list(chat)
        skip = gr.skip()
        yield chat, payload, skip, skip, history, skip, skip
        messages = [ChatMessage(m["role"], m["content"]) for m in history]
        session_id = getattr(request, "session_hash", None) or "anonymous"
        question = reply_text = ""
        try:
            for event in pipeline.run_turn(messages, text=text, audio_path=audio_path, session_id=session_id):
                if isinstance(event, UserTurn):
                    question = event.text
                    heard = f"🎤 {event.text}" if event.transcript else event.text
                    chat += [{"role": "user", "content": heard}, {"role": "assistant", "content": "…"}]
                    yield chat, payload, "", None, history, skip, skip
                elif isinstance(event, ReplyDelta):
                    reply_text += event.text
                    chat[-1] = {"role": "assistant", "content": reply_text}
                    yield chat, payload, skip, skip, history, skip, skip
                elif isinstance(event, SpokenClip):
                    clip = avatar_clip(event.wav_path, event.track, offset_s=event.offset_s, emotion=event.emotion)
                    clips = [*payload["clips"], clip] if payload["turn_id"] == event.turn_id else [clip]
                    payload = avatar_frame(event.turn_id, "speaking", clips)
                    yield chat, payload, skip, skip, history, skip, skip
                elif isinstance(event, TurnComplete):
                    chat[-1] = {"role": "assistant", "content": event.reply.text + turn_note(event)}
                    history = [*history, {"role": "user", "content": question},
                               {"role": "assistant", "content": event.reply.text}]
                    if not payload["clips"]:
                        payload = avatar_state("idle")
                    label = f"{event.emotion.label} ({event.emotion.confidence:.0%})"
                    yield chat, payload, skip, skip, history, label, latency_frame(event.timings_s)
        except PipelineError as exc:
            log.warning("turn failed: %s", exc)
            gr.Warning(exc.user_message())
            if chat and chat[-1]["content"] == "…":
                chat[-1] = {"role": "assistant", "content": f"⚠️ {exc.user_message()}"}
            else:
                chat.append({"role": "assistant", "content": f"⚠️ {exc.user_message()}"})
            yield chat, avatar_state("idle"), skip, None, history, skip, skip

    def ask(text: str | None, audio_path: str | None) -> tuple[str, str, dict, dict]:
        """API: one whole turn. Returns the reply text, its audio (WAV), its lip-sync track and details.

        The lip-sync track is Rhubarb's JSON plus ``oculus`` viseme keyframes; details hold the emotion (label, all
        scores), the latency breakdown, the sources, whether the cache answered, and the cost under each preset.
        """
        try:
            done = list(pipeline.run_turn([], text=text, audio_path=audio_path, session_id="api"))[-1]
        except PipelineError as exc:
            raise gr.Error(exc.user_message()) from exc
        lipsync = {**done.track.to_rhubarb(done.wav_path), "oculus": track_payload(done.track)["keyframes"]}
        details = {
            **emotion_payload(done.emotion),
            "timings_s": dict(done.timings_s),
            "sources": [p.citation() for p in done.passages],
            "cache": done.cache,
            "costs_usd": dict(done.costs_usd),
        }
        return done.reply.text, done.wav_path, lipsync, details

    def status_markdown() -> str:
        return "\n".join(f"- {s.line()}" for s in pipeline.statuses())

    def dashboard(conversations_per_day: float) -> tuple:
        """Latency percentiles, cost per turn and the emotion mix from the turn log, with a monthly projection."""
        log_ = pipeline.turn_log
        latency = log_.latency_percentiles("1min")
        latency_long = latency.melt(id_vars=["bucket", "turns"], var_name="measure", value_name="seconds")
        summary = log_.session_summary(None, conversations_per_day=conversations_per_day)
        return latency_long, log_.cost_over_time("1min"), log_.emotion_mix(), summary.round(4)

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        history = gr.State([])
        with gr.Tab("Talk"):
            with gr.Row():
                with gr.Column(scale=5):
                    avatar = Avatar(elem_id="avatar")
                    emotion_box = gr.Textbox(label="Emotion of the reply", interactive=False, elem_id="emotion")
                with gr.Column(scale=6):
                    chat = gr.Chatbot(label="Conversation", height=380, elem_id="chat", buttons=["copy_all"])
                    with gr.Row():
                        question = gr.Textbox(placeholder="Ask me something…", show_label=False, scale=5,
                                              elem_id="question", max_lines=4)
                        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    gr.Examples(EXAMPLES, question, label="Try")
                    mic = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Or speak",
                                   elem_id="mic")
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

        outputs = [chat, avatar, question, mic, history, emotion_box, latency_plot]
        inputs = [question, mic, chat, history]
        for trigger in (send.click, question.submit):
            trigger(respond, inputs, outputs, api_visibility="private")
        mic.stop_recording(respond, inputs, outputs, api_visibility="private")
        mic.start_recording(lambda: avatar_state("listening"), None, avatar, api_visibility="private")
        dash_out = [latency_chart, cost_chart, emotion_chart, summary_table]
        for trigger in (refresh.click, dashboard_tab.select):
            trigger(dashboard, per_day, dash_out, api_visibility="private")

        api_inputs = [gr.Textbox(visible=False), gr.Audio(visible=False, type="filepath")]
        api_outputs = [gr.Textbox(visible=False), gr.Audio(visible=False, type="filepath"), gr.JSON(visible=False),
                       gr.JSON(visible=False)]
        gr.Button(visible=False).click(ask, api_inputs, api_outputs, api_name="ask")
        demo.load(status_markdown, None, status_box, api_visibility="private")
    return demo


def main(config: AppConfig | None = None) -> None:
    """Load the models, then serve the app."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config or load_config()
    pipeline = Pipeline(config)
    for status in pipeline.warm_up():
        log.info("%s", status.line())
    demo = build_app(pipeline)
    demo.queue(default_concurrency_limit=1).launch(server_name=config.host, server_port=config.port)


if __name__ == "__main__":
    main()
