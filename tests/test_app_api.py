"""The app's public API through gradio_client: a whole turn, text in → audio + lip-sync + emotion out."""

from __future__ import annotations

import pytest
import soundfile as sf
from gradio_client import Client

from app import build_app
from core.types import EMOTION_LABELS, RHUBARB_SHAPES


@pytest.fixture(scope="module")
def client(pipeline):
    demo = build_app(pipeline)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_ask_returns_audio_lipsync_and_emotion(client):
    text, audio_path, lipsync, emotion = client.predict("What can you do for me?", None, api_name="/ask")
    assert text.strip()
    info = sf.info(audio_path)
    data, rate = sf.read(audio_path)
    assert info.duration > 0.5 and abs(data).max() > 0.05
    cues = lipsync["mouthCues"]
    assert cues[0]["start"] == 0 and cues[-1]["end"] == pytest.approx(info.duration, abs=0.02)
    assert {c["value"] for c in cues} <= set(RHUBARB_SHAPES) and len({c["value"] for c in cues}) > 2
    assert lipsync["oculus"] and all(k["w"] for k in lipsync["oculus"])
    assert emotion["label"] in EMOTION_LABELS and set(emotion["scores"]) == set(EMOTION_LABELS)
    assert emotion["timings_s"]["first_audio_s"] > 0


def test_bad_input_gets_a_clear_error_and_the_session_keeps_working(client, tmp_path):
    with pytest.raises(Exception, match="type a question"):
        client.predict("   ", None, api_name="/ask")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio at all")
    from gradio_client import handle_file

    with pytest.raises(Exception, match="(?i)audio"):
        client.predict("", handle_file(str(not_audio)), api_name="/ask")
    text, *_ = client.predict("Say hello.", None, api_name="/ask")
    assert text.strip()
