"""Configuration: environment variables are parsed strictly and every one is documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT, load_config
from core.errors import ConfigError

CONFIG_SOURCE = (PROJECT_ROOT / "core" / "config.py").read_text()
README = (PROJECT_ROOT / "README.md").read_text()


def test_every_environment_variable_is_in_the_readme_table():
    names = set(re.findall(r'_get\w*\(env, "([A-Z0-9_]+)"', CONFIG_SOURCE))
    assert len(names) > 20
    missing = sorted(n for n in names if f"`{n}`" not in README)
    assert not missing, f"add these to the README configuration table: {missing}"


def test_defaults_are_the_offline_stack():
    config = load_config({})
    assert (config.llm.backend, config.asr.backend, config.tts.backend) == ("auto", "whispercpp", "piper")
    assert config.streaming and config.response_cache and config.port == 7860


def test_values_are_read_and_types_converted():
    config = load_config({"AVATAR_LLM_MAX_TOKENS": "40", "AVATAR_LLM_TEMPERATURE": "0.1", "AVATAR_STREAMING": "off",
                          "AVATAR_CACHE_DIR": "/tmp/x", "DATABRICKS_APP_PORT": "8123"})
    assert config.llm.max_tokens == 40 and config.llm.temperature == 0.1 and not config.streaming
    assert config.cache_dir == Path("/tmp/x")
    # Databricks Apps: listen on its port, on every interface.
    assert config.port == 8123 and config.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("name", "value"),
    [("AVATAR_LLM_MAX_TOKENS", "lots"), ("AVATAR_LLM_TEMPERATURE", "warm"), ("AVATAR_STREAMING", "maybe")],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})
