"""What the chat, the panels and the API show of a turn: the small print under an answer, the latency chart, the
avatar's state frames, a failed turn's message, and ``/ask``'s details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from components.avatar import avatar_frame, emotion_payload, track_payload
from core.types import TurnComplete, TurnOptions

LATENCY_LABELS = {
    "asr_s": "speech recognition",
    "retrieval_s": "retrieval",
    "notes_s": "notes after the question (and the model's coverage check)",
    "llm_first_token_s": "LLM first token",
    "tts_first_s": "first clip TTS",
    "first_audio_s": "time to first audio",
    "llm_total_s": "LLM total",
    "tts_s": "TTS total",
    "lipsync_s": "lip-sync total",
    "total_s": "turn total",
}
"""The latency breakdown shown after each turn, in pipeline order."""
PENDING = "…"
"""The assistant's message while its reply has not started."""
WARNING_MARK = "⚠️"


def turn_note(done: TurnComplete) -> str:
    """The small print under an answer: sources, a cache hit, and what the turn cost."""
    notes = []
    if done.reply.notice:
        notes.append(f"{WARNING_MARK} {done.reply.notice}")
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
    """An avatar update that only changes its state (listening, waiting, thinking, idle)."""
    return avatar_frame(f"state-{state}", state)


def with_failure(chat: list[dict], message: str) -> list[dict]:
    """The chat with a failed turn's message: in place of the pending reply, or after what was already said."""
    chat = list(chat)
    entry = {"role": "assistant", "content": f"{WARNING_MARK} {message}"}
    if chat and chat[-1]["role"] == "assistant" and chat[-1]["content"] == PENDING:
        chat[-1] = entry
    else:
        chat.append(entry)
    return chat


def api_details(done: TurnComplete, options: TurnOptions, character: str) -> dict[str, Any]:
    """``/ask``'s details: the emotion (label, all scores), the latency breakdown, the sources, whether the cache
    answered, the cost under each preset, the ``turn_key`` to rate the answer with, the session's variant, and the
    character and voice that spoke."""
    return {
        **emotion_payload(done.emotion),
        "timings_s": dict(done.timings_s),
        "sources": [p.citation() for p in done.passages],
        "cache": done.cache,
        "costs_usd": dict(done.costs_usd),
        "turn_key": done.turn_key,
        "experiment": options.experiment or None,
        "variant": options.variant or None,
        "character": character,
        "voice": options.tts,
    }


def api_lipsync(done: TurnComplete) -> dict[str, Any]:
    """``/ask``'s lip-sync: Rhubarb's JSON plus the ``oculus`` viseme keyframes."""
    return {**done.track.to_rhubarb(done.wav_path), "oculus": track_payload(done.track)["keyframes"]}
