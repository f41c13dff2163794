"""Gradio's own file folder (uploads, and copies of every audio file a turn sends to the browser or an API caller)
kept under the configured cap, as the pipeline keeps its audio folders (``core.disk_budget``)."""

from __future__ import annotations

from pathlib import Path

from gradio.utils import get_upload_folder

from core.config import AppConfig
from core.disk_budget import FolderBudget


def gradio_upload_budget(config: AppConfig) -> FolderBudget:
    """The cap (``AVATAR_UPLOADS_MAX_MB``) on the folder Gradio writes uploads and output-file copies to
    (``$GRADIO_TEMP_DIR``, else ``<system temp>/gradio``)."""
    return FolderBudget((Path(get_upload_folder()),), config.limits.uploads_max_mb)
