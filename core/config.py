"""Configuration: one dataclass tree, read once from environment variables (documented in README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError
from core.persona import NAME_FIELD, default_persona, default_system_prompt

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_MODEL_DIR = PROJECT_ROOT / ".cache" / "models"
"""Where models assembled at install time live (e.g. the local LLM joined from its part packages). Apart from
``AVATAR_CACHE_DIR`` so that a throwaway cache (tests, benchmarks) does not assemble a gigabyte again."""



@dataclass(frozen=True)
class LLMConfig:
    """Which language model answers and how."""

    backend: str = "auto"  # auto | local | databricks | openai
    local_model: str = ""  # a model of data/llm_models.json for the local backend; "" = the catalogue's default
    model_path: str = ""  # explicit GGUF for the local backend (overrides local_model's file)
    model_dir: Path = DEFAULT_MODEL_DIR
    max_tokens: int = 160  # a safety cap: answers end by sentences (max_sentences), not by this
    max_sentences: int = 3  # spoken answers stop after this many sentences
    temperature: float = 0.3  # SmolLM2-135M answers sensibly far more often at 0.3 than at 0.7 (measured)
    grounded_temperature: float = 0.0  # turns with knowledge-base passages: stick to the passage (measured)
    extractive_min_score: float = 0.3  # local model: quote the passage instead of generating at this retrieval score
    small: str = ""  # router's backend for simple questions: local, databricks[/endpoint], openai[/model]; "" = auto
    large: str = ""  # router's backend for complex questions (same forms); "" = the small one
    system_prompt: str = field(default_factory=default_system_prompt)
    threads: int = 0  # CPU threads for the local LLM while it generates; 0 = its profile's (data/llm_models.json)
    databricks_endpoint: str = "databricks-meta-llama-3-1-8b-instruct"
    openai_base_url: str = ""
    openai_api_key: str = ""
    openai_model: str = ""
    timeout_s: float = 30.0
    history_turns: int = 6  # past question/answer pairs sent with each question


@dataclass(frozen=True)
class ASRConfig:
    """Which speech recogniser transcribes the user's audio."""

    backend: str = "whispercpp"
    model: str = "tiny.en"  # a whisper.cpp model name, or a path to a ggml file
    threads: int = 2
    max_audio_s: float = 60.0
    vad_pause_s: float = 0.8  # hands-free mode: a pause this long ends the user's spoken turn
    hint_words: int = 40  # the knowledge base's headings Whisper is prompted with (core.asr.hint); 0: none


@dataclass(frozen=True)
class TTSConfig:
    """Which voice speaks the replies."""

    backend: str = "piper"
    voice_path: str = ""  # explicit .onnx voice for Piper


@dataclass(frozen=True)
class LipsyncConfig:
    """Where lip-sync timings come from."""

    backend: str = "auto"  # auto | tts | rhubarb | transcript | audio
    rhubarb_path: str = ""  # a rhubarb binary; "auto" also looks on PATH
    rhubarb_recognizer: str = "pocketSphinx"  # pocketSphinx | phonetic (Rhubarb's -r)


@dataclass(frozen=True)
class EmotionConfig:
    """Which classifier reads emotion from text."""

    backend: str = "auto"  # auto | embedding | transformers
    model: str = "j-hartmann/emotion-english-distilroberta-base"


@dataclass(frozen=True)
class RetrievalConfig:
    """Which knowledge base grounds the answers, where it is searched, and when a cached answer is reused."""

    backend: str = "local"  # local | databricks
    kb_dir: Path = PROJECT_ROOT / "knowledge_base"
    top_k: int = 3
    max_file_mb: float = 20.0  # larger knowledge-base files are skipped with a warning
    databricks_index: str = ""  # a Databricks Vector Search index, e.g. "main.default.avatar_kb_index"
    databricks_columns: tuple[str, ...] = ("text", "source", "title")  # the index's text, source, title columns
    cache_similarity: float = 0.92  # cosine at or above which a cached question counts as the same question


@dataclass(frozen=True)
class StoreConfig:
    """Where the turn log, feedback and experiment assignments are kept (see ``core.turnstore``)."""

    backend: str = "auto"  # auto (postgres when DATABASE_URL or PGHOST is set, else sqlite) | sqlite | postgres
    sqlite_path: Path = PROJECT_ROOT / ".cache" / "turns.sqlite"
    database_url: str = ""  # postgresql://user:password@host:5432/db?sslmode=require
    pg_host: str = ""  # PG* variables: what Databricks Apps inject for a Lakebase database resource
    pg_port: int = 5432
    pg_database: str = ""
    pg_user: str = ""
    pg_password: str = ""  # empty on Databricks Apps: the app's OAuth token is the password
    pg_sslmode: str = ""
    pg_appname: str = ""
    lakebase_instance: str = ""  # set: passwords come from the SDK's database-credential call for this instance
    connect_timeout_s: float = 5.0  # a database that does not answer within this delays one turn at most once


@dataclass(frozen=True)
class ExperimentConfig:
    """Which A/B experiment runs (definitions live in a data file, see ``core.experiments``)."""

    file: Path = DATA_DIR / "experiments.json"
    name: str = ""  # run this experiment, whatever the file says; "none" runs none; "" = the file's running one


@dataclass(frozen=True)
class LimitsConfig:
    """How much one instance takes on at once, and how much disk it may fill (see ``core.turn_policy``)."""

    turn_concurrency: int = 0  # turns running at once across all sessions; 0 = derived from the cores and the LLM
    session_turns: int = 1  # turns one session may have waiting or running at once
    audio_max_mb: float = 256.0  # clip and replay WAVs under cache_dir, oldest removed first past this
    uploads_max_mb: float = 256.0  # Gradio's upload and output-file folder, bounded the same way


@dataclass(frozen=True)
class AppConfig:
    """The whole configuration."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    lipsync: LipsyncConfig = field(default_factory=LipsyncConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    experiments: ExperimentConfig = field(default_factory=ExperimentConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    max_text_chars: int = 500
    streaming: bool = True  # speak each clause as soon as it is written (False: wait for the whole reply)
    response_cache: bool = True  # replay stored replies to repeated self-contained questions
    torch_threads: int = 1  # small torch models (embeddings, VAD) run fastest on one thread beside the LLM
    cache_dir: Path = PROJECT_ROOT / ".cache"
    host: str = "127.0.0.1"
    port: int = 7860


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value if value else default


def _get_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _get_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _get_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name, "1" if default else "0").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _system_prompt(env: Mapping[str, str]) -> str:
    """AVATAR_SYSTEM_PROMPT (its ``{name}`` filled in), else the persona's prompt, named AVATAR_ASSISTANT_NAME."""
    persona = default_persona()
    name = _get(env, "AVATAR_ASSISTANT_NAME", persona.name)
    custom = _get(env, "AVATAR_SYSTEM_PROMPT", "")
    return custom.replace(NAME_FIELD, name) if custom else persona.system_prompt(name)


def load_config(env: Mapping[str, str] | None = None) -> AppConfig:
    """Build the configuration from environment variables (``os.environ`` unless ``env`` is given)."""
    env = os.environ if env is None else env
    llm = LLMConfig(
        backend=_get(env, "AVATAR_LLM", LLMConfig.backend),
        local_model=_get(env, "AVATAR_LLM_LOCAL_MODEL", ""),
        model_path=_get(env, "AVATAR_LLM_MODEL_PATH", ""),
        model_dir=Path(_get(env, "AVATAR_MODEL_DIR", str(DEFAULT_MODEL_DIR))),
        max_tokens=_get_int(env, "AVATAR_LLM_MAX_TOKENS", LLMConfig.max_tokens),
        max_sentences=_get_int(env, "AVATAR_LLM_MAX_SENTENCES", LLMConfig.max_sentences),
        temperature=_get_float(env, "AVATAR_LLM_TEMPERATURE", LLMConfig.temperature),
        grounded_temperature=_get_float(env, "AVATAR_LLM_GROUNDED_TEMPERATURE", LLMConfig.grounded_temperature),
        extractive_min_score=_get_float(env, "AVATAR_LLM_EXTRACTIVE_MIN_SCORE", LLMConfig.extractive_min_score),
        small=_get(env, "AVATAR_LLM_SMALL", LLMConfig.small),
        large=_get(env, "AVATAR_LLM_LARGE", LLMConfig.large),
        system_prompt=_system_prompt(env),
        threads=_get_int(env, "AVATAR_LLM_THREADS", LLMConfig.threads),
        databricks_endpoint=_get(env, "SERVING_ENDPOINT", LLMConfig.databricks_endpoint),
        openai_base_url=_get(env, "OPENAI_BASE_URL", ""),
        openai_api_key=_get(env, "OPENAI_API_KEY", ""),
        openai_model=_get(env, "OPENAI_MODEL", ""),
        timeout_s=_get_float(env, "AVATAR_LLM_TIMEOUT_S", LLMConfig.timeout_s),
        history_turns=_get_int(env, "AVATAR_HISTORY_TURNS", LLMConfig.history_turns),
    )
    asr = ASRConfig(
        backend=_get(env, "AVATAR_ASR", ASRConfig.backend),
        model=_get(env, "AVATAR_ASR_MODEL", ASRConfig.model),
        threads=_get_int(env, "AVATAR_ASR_THREADS", ASRConfig.threads),
        hint_words=_get_int(env, "AVATAR_ASR_HINT_WORDS", ASRConfig.hint_words),
        max_audio_s=_get_float(env, "AVATAR_MAX_AUDIO_S", ASRConfig.max_audio_s),
        vad_pause_s=_get_float(env, "AVATAR_VAD_PAUSE_S", ASRConfig.vad_pause_s),
    )
    tts = TTSConfig(
        backend=_get(env, "AVATAR_TTS", TTSConfig.backend),
        voice_path=_get(env, "AVATAR_TTS_VOICE_PATH", ""),
    )
    emotion = EmotionConfig(
        backend=_get(env, "AVATAR_EMOTION", EmotionConfig.backend),
        model=_get(env, "AVATAR_EMOTION_MODEL", EmotionConfig.model),
    )
    lipsync = LipsyncConfig(
        backend=_get(env, "AVATAR_LIPSYNC", LipsyncConfig.backend),
        rhubarb_path=_get(env, "AVATAR_RHUBARB_PATH", ""),
        rhubarb_recognizer=_get(env, "AVATAR_RHUBARB_RECOGNIZER", LipsyncConfig.rhubarb_recognizer),
    )
    retrieval = RetrievalConfig(
        backend=_get(env, "AVATAR_RETRIEVAL", RetrievalConfig.backend),
        kb_dir=Path(_get(env, "AVATAR_KB_DIR", str(RetrievalConfig.kb_dir))),
        top_k=_get_int(env, "AVATAR_KB_TOP_K", RetrievalConfig.top_k),
        max_file_mb=_get_float(env, "AVATAR_KB_MAX_FILE_MB", RetrievalConfig.max_file_mb),
        databricks_index=_get(env, "AVATAR_VS_INDEX", ""),
        databricks_columns=tuple(
            c.strip() for c in _get(env, "AVATAR_VS_COLUMNS", ",".join(RetrievalConfig.databricks_columns)).split(",")
        ),
        cache_similarity=_get_float(env, "AVATAR_CACHE_SIMILARITY", RetrievalConfig.cache_similarity),
    )
    cache_dir = Path(_get(env, "AVATAR_CACHE_DIR", str(AppConfig.cache_dir)))
    store = StoreConfig(
        backend=_get(env, "AVATAR_TURN_STORE", StoreConfig.backend),
        sqlite_path=Path(_get(env, "AVATAR_TURN_STORE_PATH", str(cache_dir / "turns.sqlite"))),
        database_url=_get(env, "DATABASE_URL", ""),
        pg_host=_get(env, "PGHOST", ""),
        pg_port=_get_int(env, "PGPORT", StoreConfig.pg_port),
        pg_database=_get(env, "PGDATABASE", ""),
        pg_user=_get(env, "PGUSER", ""),
        pg_password=_get(env, "PGPASSWORD", ""),
        pg_sslmode=_get(env, "PGSSLMODE", ""),
        pg_appname=_get(env, "PGAPPNAME", ""),
        lakebase_instance=_get(env, "AVATAR_LAKEBASE_INSTANCE", ""),
        connect_timeout_s=_get_float(env, "AVATAR_DB_CONNECT_TIMEOUT_S", StoreConfig.connect_timeout_s),
    )
    experiments = ExperimentConfig(
        file=Path(_get(env, "AVATAR_EXPERIMENTS_FILE", str(ExperimentConfig.file))),
        name=_get(env, "AVATAR_EXPERIMENT", ""),
    )
    limits = LimitsConfig(
        turn_concurrency=_get_int(env, "AVATAR_TURN_CONCURRENCY", LimitsConfig.turn_concurrency),
        session_turns=_get_int(env, "AVATAR_SESSION_TURNS", LimitsConfig.session_turns),
        audio_max_mb=_get_float(env, "AVATAR_AUDIO_MAX_MB", LimitsConfig.audio_max_mb),
        uploads_max_mb=_get_float(env, "AVATAR_UPLOADS_MAX_MB", LimitsConfig.uploads_max_mb),
    )
    if limits.turn_concurrency < 0 or limits.session_turns < 1:
        raise ConfigError("AVATAR_TURN_CONCURRENCY must be 0 (automatic) or more, AVATAR_SESSION_TURNS 1 or more")
    port = _get_int(env, "DATABRICKS_APP_PORT", _get_int(env, "GRADIO_SERVER_PORT", AppConfig.port))
    return AppConfig(
        llm=llm,
        asr=asr,
        tts=tts,
        emotion=emotion,
        lipsync=lipsync,
        retrieval=retrieval,
        store=store,
        experiments=experiments,
        limits=limits,
        max_text_chars=_get_int(env, "AVATAR_MAX_TEXT_CHARS", AppConfig.max_text_chars),
        streaming=_get_bool(env, "AVATAR_STREAMING", AppConfig.streaming),
        response_cache=_get_bool(env, "AVATAR_RESPONSE_CACHE", AppConfig.response_cache),
        torch_threads=_get_int(env, "AVATAR_TORCH_THREADS", AppConfig.torch_threads),
        cache_dir=cache_dir,
        host=_get(env, "GRADIO_SERVER_NAME", "0.0.0.0" if "DATABRICKS_APP_PORT" in env else AppConfig.host),
        port=port,
    )
