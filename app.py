"""Avatar Assistant's web app: Gradio Blocks wiring the pipeline to the chat, the microphone and the 3D avatar."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from components.avatar import Avatar
from core.config import AppConfig, load_config
from core.errors import PipelineError
from core.pipeline import Pipeline
from core.types import (
    ChatMessage,
    Emotion,
    ReplyDelta,
    SpokenClip,
    TurnComplete,
    UserTurn,
    VisemeTrack,
)

log = logging.getLogger("avatar_assistant")

TITLE = "Avatar Assistant"
INTRO = "Ask a question by typing or with the microphone: the avatar answers aloud, offline, on the CPU."


# -- payloads for the avatar component and the API --------------------------------------------------------------


def track_payload(track: VisemeTrack) -> dict[str, Any]:
    """A viseme track as the avatar component reads it."""
    return {
        "mouth_cues": track.to_rhubarb()["mouthCues"],
        "keyframes": [
            {"t": round(k.time_s, 3), "w": {f"viseme_{v}": w for v, w in k.weights.items()}} for k in track.keyframes
        ],
    }


def emotion_payload(emotion: Emotion) -> dict[str, Any]:
    """An emotion as the avatar component and the API show it."""
    return {"label": emotion.label, "scores": dict(emotion.scores), "intensity": round(emotion.confidence, 3)}


def clip_payload(clip: SpokenClip) -> dict[str, Any]:
    """One spoken clip as the avatar component plays it."""
    return {
        "audio": clip.wav_path,
        "offset_s": round(clip.offset_s, 3),
        "duration_s": round(clip.duration_s, 3),
        "text": clip.text,
        "track": track_payload(clip.track),
        "emotion": emotion_payload(clip.emotion),
    }


def sources_note(done: TurnComplete) -> str:
    """The citations (and a cache hit) shown under an answer in the chat."""
    notes = []
    if done.passages:
        notes.append("Sources: " + "; ".join(dict.fromkeys(p.citation() for p in done.passages)))
    if done.cache != "miss":
        notes.append(f"Answered from the cache ({done.cache} match).")
    return "".join(f"\n\n<sub>{note}</sub>" for note in notes)


def avatar_state(state: str, turn_id: str = "") -> dict[str, Any]:
    """An avatar update that only changes its state (listening, thinking, idle)."""
    return {"turn_id": turn_id or f"state-{state}", "state": state, "clips": []}


def format_timings(timings: dict[str, float]) -> str:
    """The last turn's latency breakdown as a short Markdown table."""
    labels = {
        "asr_s": "Speech recognition",
        "llm_first_token_s": "LLM first token",
        "tts_first_s": "First clip synthesis",
        "first_audio_s": "Time to first audio",
        "llm_total_s": "LLM total",
        "tts_s": "TTS total",
        "lipsync_s": "Lip-sync total",
        "total_s": "Turn total",
    }
    rows = [f"| {label} | {timings[key]:.2f} s |" for key, label in labels.items() if key in timings]
    return "| Stage | Time |\n|---|---|\n" + "\n".join(rows)


# -- the app ------------------------------------------------------------------------------------------------------


def build_app(pipeline: Pipeline) -> gr.Blocks:
    """Create the Blocks UI around a pipeline (no model is loaded here)."""

    def respond(
        text: str | None, audio_path: str | None, chat: list[dict], history: list[dict]
    ) -> Iterator[tuple]:
        """Run one turn, streaming chat text and avatar clips; errors become a message and change nothing."""
        payload: dict[str, Any] = avatar_state("thinking")
        chat = list(chat)
        yield chat, payload, gr.skip(), history, gr.skip(), gr.skip()
        messages = [ChatMessage(m["role"], m["content"]) for m in history]
        reply_text = ""
        try:
            for event in pipeline.run_turn(messages, text=text, audio_path=audio_path):
                if isinstance(event, UserTurn):
                    heard = f"🎤 {event.text}" if event.transcript else event.text
                    chat += [{"role": "user", "content": heard}, {"role": "assistant", "content": "…"}]
                    yield chat, payload, "", history, gr.skip(), gr.skip()
                    user_text = event.text
                elif isinstance(event, ReplyDelta):
                    reply_text += event.text
                    chat[-1] = {"role": "assistant", "content": reply_text}
                    yield chat, payload, gr.skip(), history, gr.skip(), gr.skip()
                elif isinstance(event, SpokenClip):
                    if not payload["clips"]:
                        payload = {"turn_id": event.turn_id, "state": "speaking", "clips": []}
                    payload = {**payload, "clips": [*payload["clips"], clip_payload(event)]}
                    yield chat, payload, gr.skip(), history, gr.skip(), gr.skip()
                elif isinstance(event, TurnComplete):
                    label = f"{event.emotion.label} ({event.emotion.confidence:.0%})"
                    chat[-1] = {"role": "assistant", "content": event.reply.text + sources_note(event)}
                    history = [*history, {"role": "user", "content": user_text},
                               {"role": "assistant", "content": event.reply.text}]
                    if not payload["clips"]:
                        payload = avatar_state("idle")
                    yield chat, payload, gr.skip(), history, label, format_timings(dict(event.timings_s))
        except PipelineError as exc:
            log.warning("turn failed: %s", exc)
            gr.Warning(exc.user_message())
            chat = [m for m in chat if m.get("content") != "…"]
            chat.append({"role": "assistant", "content": f"⚠️ {exc.user_message()}"})
            yield chat, avatar_state("idle"), gr.skip(), history, gr.skip(), gr.skip()

    def ask(text: str | None, audio_path: str | None) -> tuple[str, str, dict, dict]:
        """API: one whole turn. Returns the reply text, the reply audio (WAV), the lip-sync track and the emotion."""
        try:
            events = list(pipeline.run_turn([], text=text, audio_path=audio_path))
        except PipelineError as exc:
            raise gr.Error(exc.user_message()) from exc
        done = events[-1]
        lipsync = {**done.track.to_rhubarb(done.wav_path), "oculus": track_payload(done.track)["keyframes"]}
        details = {
            **emotion_payload(done.emotion),
            "timings_s": dict(done.timings_s),
            "sources": [p.citation() for p in done.passages],
            "cache": done.cache,
        }
        return done.reply.text, done.wav_path, lipsync, details

    def status_markdown() -> str:
        return "\n".join(f"- {s.line()}" for s in pipeline.statuses())

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=5):
                avatar = Avatar(elem_id="avatar")
                emotion_box = gr.Textbox(label="Emotion of the reply", interactive=False, elem_id="emotion")
            with gr.Column(scale=6):
                chat = gr.Chatbot(label="Conversation", height=380, elem_id="chat")
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask me something…", show_label=False, scale=5, elem_id="question", max_lines=4
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                mic = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Or speak", elem_id="mic")
                with gr.Accordion("Last turn", open=False):
                    timings_box = gr.Markdown(elem_id="timings")
                with gr.Accordion("Backends", open=True):
                    status_box = gr.Markdown(elem_id="status")

        outputs = [chat, avatar, question, history, emotion_box, timings_box]
        for trigger in (send.click, question.submit):
            trigger(respond, [question, mic, chat, history], outputs, api_visibility="private")
        mic.stop_recording(respond, [question, mic, chat, history], outputs, api_visibility="private")
        mic.start_recording(lambda: avatar_state("listening"), None, avatar, api_visibility="private")
        api_text = gr.Textbox(visible=False)
        api_audio = gr.Audio(visible=False, type="filepath")
        api_out = [gr.Textbox(visible=False), gr.Audio(visible=False, type="filepath"), gr.JSON(visible=False),
                   gr.JSON(visible=False)]
        gr.Button(visible=False).click(ask, [api_text, api_audio], api_out, api_name="ask")
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
