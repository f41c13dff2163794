"""Browser-test helpers: headless Debian Chromium with software WebGL, and a Gradio app served in a thread.

Use the ``chromium`` fixture (import it into the test module) and ``serve_blocks(demo)``::

    from tests.browser import chromium, serve_blocks  # noqa: F401 - chromium is a fixture

    def test_x(chromium):
        with serve_blocks(demo) as url:
            page = chromium.new_page()
            page.goto(url)
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--autoplay-policy=user-gesture-required",
)
"""Flags that give WebGL through SwiftShader; audio keeps the normal user-gesture rule (a click unlocks it)."""


def launch_chromium(playwright, **kwargs):
    """Launch Debian's chromium (never a Playwright-downloaded one) with the WebGL flags."""
    if not CHROMIUM_PATH.exists():
        pytest.skip(f"{CHROMIUM_PATH} is missing (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=list(CHROMIUM_ARGS), **kwargs)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium browser for the module's tests."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_blocks(demo, **launch_kwargs) -> Iterator[str]:
    """Serve a ``gr.Blocks`` on a free local port (Gradio's own server thread); yield its URL; close it after."""
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        show_error=True,
        **launch_kwargs,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def console_collector(page) -> list[str]:
    """Collect a page's console messages and page errors (as "type: text") for assertion messages."""
    lines: list[str] = []
    page.on("console", lambda msg: lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: lines.append(f"pageerror: {err}"))
    return lines


def ask(page, text: str) -> float:
    """Type a question in the Talk tab and press Send; the time of the click (``time.perf_counter``)."""
    page.locator("#question textarea").fill(text)
    page.locator("#send").click()
    return time.perf_counter()
