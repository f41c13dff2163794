"""Where the components' browser files live, and how a gr.HTML component reads its template, CSS and JS."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"


def html_component_files(name: str) -> dict[str, str]:
    """``html_template``, ``css_template`` and ``js_on_load`` for a gr.HTML component from ``static/<name>.*``."""
    return {
        "html_template": (STATIC_DIR / f"{name}.html").read_text(encoding="utf-8"),
        "css_template": (STATIC_DIR / f"{name}.css").read_text(encoding="utf-8"),
        "js_on_load": (STATIC_DIR / f"{name}.js").read_text(encoding="utf-8"),
    }
