"""Voice input component: speak a question, transcribed live in the browser or recorded for the server's whisper.cpp.

The browser side (``static/voice_input.js``) uses the Web Speech API where it exists (interim text shown while the
user speaks, the final text sent as the turn); where it is missing, fails, or the user chooses the server, it records
with MediaRecorder (WebM/Opus), uploads the file and sends its server path. Hands-free mode keeps listening and ends
each question after a pause (``pause_s``): the browser engine waits that long after a final result, the recorder
runs an energy VAD on the microphone level. The server then trims silence with Silero and transcribes (core.asr).

Events (data in ``gr.EventData``):
    ``speech_start``: the user began to speak (or pressed the mic): the app interrupts the avatar (barge-in).
    ``utterance``: a finished question, ``{"text": str}`` or ``{"audio": uploaded file path, "name": str}``.
    ``heard_so_far``: the browser engine's interim transcript of a question still being spoken, ``{"text": str}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from components.static_files import html_component_files
from core.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 20.0
VAD_SETTINGS: dict[str, float] = {
    "step_s": 0.03,  # how often the microphone level is read
    "max_gap_s": 0.25,  # a longer gap between readings (a busy page) counts as this long
    "min_rms": 0.01,  # quieter input is never speech
    "initial_floor": 0.003,  # noise floor assumed before the first readings
    "floor_ratio": 3.0,  # speech is this many times louder than the noise floor
    "floor_fall": 0.3,  # the floor follows quieter input quickly ...
    "floor_rise": 0.002,  # ... and louder input slowly, so speech does not raise it
    "onset_s": 0.1,  # this much speech starts the user's turn (barge-in) in hands-free mode
    "min_speech_s": 0.25,  # less speech than this is noise: a pause after it does not send anything
    "idle_restart_s": 10.0,  # hands-free: a recording with no speech this long is dropped and restarted
    "cap_margin_s": 0.5,  # a recording stops this long before the server's length cap
}
"""Browser-side energy VAD of the recorder (hands-free end of turn and barge-in)."""


def read_utterance(data: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The ``(text, audio_path)`` of an ``utterance`` event; exactly one is set.

    Raises:
        InputError: the event carries neither, or an audio path outside Gradio's upload folder.
    """
    data = data or {}
    text = data.get("text")
    if isinstance(text, str) and text.strip():
        return text, None
    audio = data.get("audio")
    if isinstance(audio, str) and audio:
        path = Path(audio).resolve()
        if not path.is_relative_to(Path(get_upload_folder()).resolve()):
            logger.warning("utterance audio outside the upload folder refused: %s", path)
            raise InputError("That recording did not arrive; please record or upload it again.")
        return None, str(path)
    raise InputError("Nothing was heard; please speak again or type your question.")


class VoiceInput(gr.HTML):
    """A microphone button with hands-free and server-transcription toggles, an upload button and a live transcript.

    Responsibilities: pick the speech engine in the browser and say which one is in use (and why) in the UI; send
    ``speech_start`` when the user begins and ``utterance`` with the finished question. It holds no value.
    """

    def __init__(
        self,
        *,
        pause_s: float = 0.8,
        max_audio_s: float = 60.0,
        lang: str = "en-US",
        hands_free: bool = False,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        **kwargs: Any,
    ) -> None:
        """Create the voice input.

        Args:
            pause_s: hands-free mode: a pause this long ends the question (``config.asr.vad_pause_s``).
            max_audio_s: a recording stops just before this length (``config.asr.max_audio_s``).
            lang: BCP 47 language of the browser's speech recogniser.
            hands_free: whether hands-free mode starts switched on.
            max_upload_mb: size cap of an uploaded or recorded file.
            **kwargs: passed to ``gr.HTML`` (elem_id, visible, ...).
        """
        if pause_s <= 0 or max_audio_s <= 0:
            raise ValueError(f"pause_s and max_audio_s must be positive, got {pause_s} and {max_audio_s}")
        super().__init__(
            value=None,
            **html_component_files("voice_input"),
            apply_default_css=False,
            pause_s=float(pause_s),
            max_audio_s=float(max_audio_s),
            lang=lang,
            hands_free=bool(hands_free),
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            vad=VAD_SETTINGS,
            **kwargs,
        )

    def api_info(self) -> dict[str, Any]:
        """The component holds no value."""
        return {"type": "null"}
