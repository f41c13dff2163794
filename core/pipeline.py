"""The turn pipeline: input → ASR → LLM (streamed) → per clause emotion + TTS + lip-sync → playable clips.

The LLM runs in a producer thread while the consumer speaks each finished clause, so the first clause is audible
before the reply is complete.
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.analytics import TurnLog, new_turn_key
from core.audio import load_audio
from core.backend import BackendStatus
from core.best_effort import best_effort
from core.cache import CachedResponse, CacheLookup, ResponseCache, RetrievalCache
from core.config import AppConfig
from core.disk_budget import FolderBudget
from core.errors import BackendError, InputError, PipelineError, TurnCancelled
from core.guard import default_guard, guarded_reply
from core.lipsync import join_tracks
from core.llm import spoken_text
from core.llm.base import STAGE as LLM_STAGE
from core.llm.base import with_notes
from core.question_notes import QuestionNotes
from core.reply_producer import END, produce_reply
from core.retrieval.vocabulary import coverage_rules
from core.stages import Stages, TurnSetup
from core.tts import TTSBackend, write_wav
from core.types import (
    ChatMessage,
    Emotion,
    Passage,
    Reply,
    ReplyDelta,
    Speech,
    SpokenClip,
    StageMetrics,
    TurnComplete,
    TurnEvent,
    TurnOptions,
    UserTurn,
    VisemeTrack,
)

log = logging.getLogger(__name__)


FOLLOW_UP = re.compile(r"\b(it|its|that|this|these|those|they|them|their|he|she|him|her|there|then|again|more|else|"
                       r"too|also|why|how come)\b|^\W*(and|or|but|so|what about|how about)\b", re.IGNORECASE)
"""Words that make a question lean on the conversation so far, or an opening that continues it ("And for a
child?"): such questions skip the response cache and are searched with the questions before them."""

FOLLOW_UP_CHAIN = 2
"""At most this many earlier questions are searched with a follow-up: FOLLOW_UP also matches common words ("is
there ...?"), so a longer chain would fold a whole conversation into every search."""

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
"""Control characters (all but tab and newline) in typed text: shown as "\ufffd", never passed to a model."""

EMPATHY_MIN_CONFIDENCE = 0.5
"""The user's emotion is mentioned to the LLM when it is not neutral and at least this confident."""
MOOD_NOTE = "(The user seems to feel {label}. Answer the question itself, kindly.)"
"""The note on the user's mood. "...; answer with empathy." made Qwen open with "I'm sorry to hear that you feel angry"
and lose the answer: 4 of the 5 mood-noted questions of the read sets missed their key fact (a complaint's reply
time, a refund's notice); this wording answers them as plainly as no note does, and still opens kindly for a user
who is furious ("I'm sorry to hear that you're feeling frustrated. ...")."""

AUDIO_STAGE = "Audio"
AUDIO_BACKEND = "disk"
"""How a failure to write a clip's WAV file is reported (stage and backend)."""
CANCELLED = "The reply was cancelled before it finished."


def retrieval_query(history: Sequence[ChatMessage], question: str) -> str:
    """What to search the knowledge base for: a follow-up ("And can I change it?") is searched together with the
    questions before it, back to the last one that was not a follow-up itself ("Why not?" names nothing either),
    since on its own it names nothing to find."""
    asked = [question]
    for message in reversed(history):
        if not FOLLOW_UP.search(asked[-1]) or len(asked) > FOLLOW_UP_CHAIN:
            break
        if message.role == "user":
            asked.append(message.content)
    return " ".join(reversed(asked)).strip()


def follow_up_search(search: Callable[[str], list[Passage]], history: Sequence[ChatMessage], question: str
                     ) -> list[Passage]:
    """The passages for ``question``: a follow-up (``retrieval_query``) is searched
    both with the questions before it and on its own, and keeps whichever finds the closer passage. A question can
    look like a follow-up and name all it needs: "I'm scared my voice recordings are being sent somewhere. Are
    they?", searched with the statement about a presentation before it, found the page on how a turn works, and the
    answer said that the recordings go to a third party."""
    query = retrieval_query(history, question)
    passages = search(query)
    if query == question:
        return passages
    alone = search(question)
    closer = max((p.score for p in alone), default=0.0) > max((p.score for p in passages), default=0.0)
    return alone if closer else passages


def _limit_torch_threads(threads: int) -> None:
    """Cap torch's intra-op threads: its small models are many times slower when they compete with the LLM."""
    import torch

    torch.set_num_threads(threads)


def _write_audio(speech: Speech, path: Path) -> None:
    """Write a clip's WAV; a full or read-only disk is the turn's failure, named as such."""
    try:
        write_wav(speech, path)
    except OSError as exc:
        raise BackendError(AUDIO_STAGE, AUDIO_BACKEND, f"cannot write {path.name}: {exc.strerror or exc}") from exc


class Pipeline:
    """Runs conversational turns.

    Responsibilities: validate input, call the stages in order, overlap LLM generation with speech synthesis,
    write each clip's audio (keeping the audio folders under their size cap), and report timings; cache, price and
    log each turn without letting that bookkeeping fail it. It never imports a UI library.
    """

    def __init__(self, config: AppConfig, stages: Stages | None = None) -> None:
        self.config = config
        _limit_torch_threads(config.torch_threads)
        self.stages = stages or Stages(config)
        self.audio_dir = config.cache_dir / "audio"
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self.audio_budget = FolderBudget((self.audio_dir, ResponseCache.audio_folder(config.cache_dir)),
                                         config.limits.audio_max_mb)
        self._response_caches: dict[str, ResponseCache] = {}
        self._response_caches_lock = threading.Lock()
        self.notes = QuestionNotes(lambda: self.stages.retrieval, config.asr.hint_words)
        self.prepared = threading.Event()
        """Set once the LLM has prepared every knowledge-base document (``warm_up`` starts that in the background)."""

    # -- status -----------------------------------------------------------------------------------------------

    def warm_up(self, system_prompts: Sequence[str] = ()) -> list[BackendStatus]:
        """Load every backend and run each model once now, so the first turn is as fast as the next; then, in the
        background, let the LLM prepare each knowledge-base document (``prepared`` is set when it is done) for each
        of ``system_prompts``, the one most turns use first (default: the configured prompt)."""
        statuses = self.statuses()
        try:
            self.stages.emotion.classify("Hello there, nice to meet you.")
            self.stages.llm.complete(self._messages([], "Hello.", self.config.llm.system_prompt))
            self.stages.lipsync.track(self.stages.tts.synthesize("Hello."))
        except PipelineError as exc:
            log.warning("warm-up failed: %s", exc.user_message())
        prompts = list(system_prompts) or [self.config.llm.system_prompt]
        threading.Thread(target=self._prepare_documents, args=(prompts,), name="llm-prepare", daemon=True).start()
        return statuses

    def _prepare_documents(self, system_prompts: Sequence[str]) -> None:
        """Best effort: a failure only means the first question about a document is slower."""
        started = time.perf_counter()
        try:
            documents = [[], *self.stages.retrieval.documents()]  # no passage first: greetings and small talk
            for prompt in system_prompts:
                self.stages.llm.prepare(prompt, documents)
            log.info("LLM: prepared %d knowledge-base documents for %d system prompts in %.1f s", len(documents),
                     len(system_prompts), time.perf_counter() - started)
        except PipelineError as exc:
            log.warning("LLM: could not prepare the knowledge-base documents: %s", exc.user_message())
        finally:
            self.prepared.set()

    def statuses(self) -> list[BackendStatus]:
        """The backend each stage uses and why a preferred one is not; a stage that cannot load says why."""
        result = []
        for stage in ("llm", "retrieval", "asr", "tts", "emotion", "lipsync"):
            try:
                result.append(getattr(self.stages, stage).status())
            except PipelineError as exc:
                result.append(BackendStatus(stage.upper(), "unavailable", exc.user_message()))
        return result

    # -- caches -----------------------------------------------------------------------------------------------

    @functools.cached_property
    def turn_log(self) -> TurnLog:
        """Every turn with its latencies, usage, cost, emotions and rating (the configured turn store)."""
        return TurnLog.for_config(self.config)

    @functools.cached_property
    def retrieval_cache(self) -> RetrievalCache:
        """Passages already found for a question (or a rewording of it)."""
        return RetrievalCache(threshold=self.config.retrieval.cache_similarity)

    def response_cache(self, setup: TurnSetup | None = None) -> ResponseCache:
        """Whole spoken replies, persisted; each cache is valid for one knowledge base, model, voice and persona."""
        key = (setup or self.setup()).settings_key()
        with self._response_caches_lock:
            if key not in self._response_caches:
                self._response_caches[key] = ResponseCache(
                    self.config.cache_dir,
                    self.stages.retrieval.fingerprint(),
                    settings_key=key,
                    threshold=self.config.retrieval.cache_similarity,
                )
            return self._response_caches[key]

    def setup(self, options: TurnOptions | None = None) -> TurnSetup:
        """The backends and settings for a turn with these options (none: the configured ones)."""
        options = options or TurnOptions()
        return TurnSetup(
            llm=self.stages.llm_for(options.llm),
            tts=self.stages.tts_for(options.tts),
            emotion=self.stages.emotion,
            lipsync=self.stages.lipsync,
            system_prompt=options.system_prompt or self.config.llm.system_prompt,
            streaming=self.config.streaming if options.streaming is None else options.streaming,
            top_k=options.top_k or self.config.retrieval.top_k,
        )

    # -- input ------------------------------------------------------------------------------------------------

    def check_text(self, text: str | None) -> str:
        """Return the cleaned question (control characters shown as U+FFFD), or raise InputError for empty or
        over-long text."""
        cleaned = CONTROL_CHARACTERS.sub("\ufffd", (text or "").strip())
        if not cleaned:
            raise InputError("Please type a question or record one with the microphone.")
        if len(cleaned) > self.config.max_text_chars:
            raise InputError(
                f"That message is {len(cleaned)} characters long; the limit is {self.config.max_text_chars}. "
                "Please shorten it."
            )
        return cleaned

    def transcribe_file(self, path: str | Path) -> UserTurn:
        """Decode an audio file of any common format, transcribe it, and read the user's emotion."""
        audio = load_audio(path, 16000, max_s=self.config.asr.max_audio_s)
        hint = best_effort("the speech hint", lambda: self.notes.words().speech_hint, "")
        transcript = self.stages.asr.transcribe(audio, hint=hint)
        text = self.check_text(transcript.text)
        return UserTurn(text=text, emotion=self.stages.emotion.classify(text), transcript=transcript)

    def read_ahead(self, history: Sequence[ChatMessage], text: str | None, options: TurnOptions | None = None
                   ) -> bool:
        """While a question is being typed: find passages for it as it stands and let the model evaluate the prompt
        so far, so that the turn for the finished question starts sooner. Advice only: False when nothing was read
        ahead (a text the turn would refuse, a message the guard answers, a model that cannot, a failure, which is
        logged)."""
        try:
            question = self.check_text(text)
        except InputError:
            return False  # the turn says why, if it is sent

        def read() -> bool:
            setup = self.setup(options)
            passages = follow_up_search(functools.partial(self.stages.retrieval.search, k=setup.top_k), history,
                                        question)
            context = tuple(self.stages.retrieval.context(passages))
            if default_guard().reply_instead(question, context):
                return False
            return setup.llm.read_ahead(self._messages(history, question, setup.system_prompt), context)

        return best_effort("reading the question ahead", read, False)

    # -- turns ------------------------------------------------------------------------------------------------

    def run_turn(
        self,
        history: Sequence[ChatMessage],
        *,
        text: str | None = None,
        audio_path: str | Path | None = None,
        cancel: threading.Event | None = None,
        session_id: str = "default",
        options: TurnOptions | None = None,
    ) -> Iterator[TurnEvent]:
        """Run one turn from typed text or an audio file, yielding events as they happen; log it with its cost.

        ``options`` override the configured voice, model, persona, streaming or retrieval depth for this turn.
        The turn is logged (and cached) after its TurnComplete is yielded, so consume the events to the end; a
        failure to price, cache or log it is logged and changes nothing the caller sees.

        Raises:
            InputError: the input cannot be used (nothing is lost: the history is unchanged).
            BackendError: a stage failed (its ``stage`` and ``backend`` say which).
            TurnCancelled: ``cancel`` was set before the reply was complete.
        """
        user: UserTurn | None = None
        done: TurnComplete | None = None
        costs: dict = {}
        turn_key = new_turn_key()
        try:
            for event in self._turn_events(history, text, audio_path, cancel, self.setup(options)):
                if isinstance(event, UserTurn):
                    user = event
                elif isinstance(event, TurnComplete) and user is not None:
                    price = functools.partial(self.turn_log.price_turn, user, event)
                    costs = best_effort("pricing the turn", price, {})
                    done = event = replace(event, costs_usd={name: c.total_usd for name, c in costs.items()},
                                           turn_key=turn_key)
                yield event
        except PipelineError as exc:
            question = user.text if user else (text or "")
            best_effort("logging the failed turn", functools.partial(
                self.turn_log.record_error, session_id, question, exc, user=user, turn_key=turn_key, options=options),
                None)
            raise
        finally:
            best_effort("keeping the audio folders under their cap", self.audio_budget.trim, None)
        if user is not None and done is not None:
            best_effort("logging the turn", functools.partial(
                self.turn_log.record_turn, session_id, user, done, router=done.reply.route or None,
                turn_key=turn_key, options=options, costs=costs or None), None)

    def _turn_events(
        self,
        history: Sequence[ChatMessage],
        text: str | None,
        audio_path: str | Path | None,
        cancel: threading.Event | None,
        setup: TurnSetup,
    ) -> Iterator[TurnEvent]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        if audio_path is not None and not (text or "").strip():
            user = self.transcribe_file(audio_path)
            timings["asr_s"] = time.perf_counter() - started
        else:
            cleaned = self.check_text(text)
            user = UserTurn(text=cleaned, emotion=self.stages.emotion.classify(cleaned))
        yield user
        cacheable = self.config.response_cache and (not history or not FOLLOW_UP.search(user.text))
        found = best_effort("looking the question up in the response cache",
                            functools.partial(self._cache_lookup, setup, user.text), None) if cacheable else None
        if found is not None:
            timings["cache_lookup_s"] = found.seconds
            if found.value is not None:
                yield from self._replay(found.value, found.kind, started, timings)
                return
        t0 = time.perf_counter()
        lookups: list[CacheLookup] = []

        def search(query: str) -> list[Passage]:
            passages, lookup = self.retrieval_cache.search(self.stages.retrieval, query, setup.top_k)
            lookups.append(lookup)
            return passages

        passages = follow_up_search(search, history, user.text)
        context = tuple(self.stages.retrieval.context(passages))
        timings["retrieval_s"] = time.perf_counter() - t0
        retrieval = StageMetrics("retrieval", self.stages.retrieval.name, timings["retrieval_s"],
                                 units={"queries": sum(not lookup.hit for lookup in lookups)})
        instead = default_guard().reply_instead(user.text, context)
        note = ""
        if not instead:
            t0 = time.perf_counter()
            note, instead = self._notes(setup, history, user, context)
            timings["notes_s"] = time.perf_counter() - t0
        grounding = () if instead else context  # a reply given without the model is not from the passages
        messages = self._messages(history, user.text, setup.system_prompt, user.emotion, note)
        clips: list[SpokenClip] = []
        for event in self._speak_reply(setup, messages, started, timings, cancel or threading.Event(), grounding,
                                       instead):
            if isinstance(event, SpokenClip):
                clips.append(event)
            elif isinstance(event, TurnComplete):
                event = replace(event, metrics=(*event.metrics, retrieval))
                yield event
                if cacheable:
                    cache = self.response_cache(setup)
                    best_effort("storing the reply in the response cache",
                                functools.partial(cache.put, user.text, clips, event, event.passages), None)
                continue
            yield event

    def _cache_lookup(self, setup: TurnSetup, question: str) -> CacheLookup[CachedResponse]:
        return self.response_cache(setup).lookup(question)

    def _replay(self, cached: CachedResponse, kind: str, started: float, timings: dict[str, float]
                ) -> Iterator[TurnEvent]:
        """Answer from the response cache: the stored text, clips and track, with no LLM or TTS call."""
        turn_id = uuid.uuid4().hex[:12]
        yield ReplyDelta(cached.reply.text)
        for clip in cached.replay(turn_id):
            timings.setdefault("first_audio_s", time.perf_counter() - started)
            yield clip
        timings["total_s"] = time.perf_counter() - started
        hit = StageMetrics("cache", "response", timings.get("cache_lookup_s", 0.0), units={"hit": 1})
        yield TurnComplete(cached.reply, cached.emotion, cached.wav_path, cached.track, dict(timings), (hit,),
                           passages=cached.passages, cache=kind)

    def _notes(self, setup: TurnSetup, history: Sequence[ChatMessage], user: UserTurn,
               context: tuple[Passage, ...]) -> tuple[str, str]:
        """The note after the question, or the reply instead (``core.question_notes``); the model that answers
        judges, in the conversation it would answer, whether its material covers a question the note is meant for.
        Either failing costs only the note."""
        def judge(check: str) -> float | None:
            asked = self._messages(history, user.text, setup.system_prompt, user.emotion, check)
            return best_effort("asking the model whether its material answers",
                               functools.partial(setup.llm.yes_margin, asked, context), None)

        return best_effort("choosing the note after the question", functools.partial(
            self.notes.note, user.text, context, system_prompt=setup.system_prompt,
            follows_notes=setup.llm.follows_notes, judge=judge), ("", ""))

    def _messages(
        self,
        history: Sequence[ChatMessage],
        question: str,
        system_prompt: str,
        user_emotion: Emotion | None = None,
        note: str = "",
    ) -> list[ChatMessage]:
        """The system prompt, the recent history, and the question (with ``note``: on a request to act or on words
        no document uses, and the user's mood, when they apply).

        Both notes go with the question, not into the system prompt, so that the prompt's beginning stays the same
        from turn to turn (a local model reuses its evaluation). Retrieved passages are not placed here either:
        ``_produce`` hands them to the LLM stage, which lays them out for its model.
        """
        mood = ""
        if user_emotion and user_emotion.label != "neutral" and user_emotion.confidence >= EMPATHY_MIN_CONFIDENCE:
            mood = MOOD_NOTE.format(label=user_emotion.label)
        question = with_notes(question, (note, mood))
        window = list(history)[-2 * self.config.llm.history_turns :] if self.config.llm.history_turns else []
        return [ChatMessage("system", system_prompt), *window, ChatMessage("user", question)]

    def _produce(self, setup: TurnSetup, messages: list[ChatMessage], passages: tuple[Passage, ...],
                 instead: str, out: queue.Queue, cancel: threading.Event) -> None:
        """Producer thread: the LLM's reply (or ``instead``, the guard's reply to a message that is not a question
        for it), through ``core.reply_producer``."""
        stream = guarded_reply(instead) if instead else setup.llm.stream(messages, passages)
        produce_reply(stream, "guard" if instead else setup.llm.name, streaming=setup.streaming, out=out,
                      cancel=cancel)

    def _speak_reply(
        self,
        setup: TurnSetup,
        messages: list[ChatMessage],
        started: float,
        timings: dict[str, float],
        cancel: threading.Event,
        passages: tuple[Passage, ...],
        instead: str = "",
    ) -> Iterator[TurnEvent]:
        out: queue.Queue = queue.Queue()
        llm_started = time.perf_counter()
        producer = threading.Thread(target=self._produce, args=(setup, messages, passages, instead, out, cancel),
                                    daemon=True)
        producer.start()
        turn_id = uuid.uuid4().hex[:12]
        speeches: list[Speech] = []
        clips: list[SpokenClip] = []
        reply: Reply | None = None
        tts_s = lipsync_s = 0.0
        interrupted = False
        try:
            while (item := out.get()) is not END:
                if cancel.is_set():  # the caller cancelled (barge-in): speak nothing more
                    interrupted = True
                    break
                if isinstance(item, PipelineError):
                    raise item
                if isinstance(item, Reply):
                    reply = item
                    timings["llm_total_s"] = time.perf_counter() - llm_started
                elif isinstance(item, ReplyDelta):
                    timings.setdefault("llm_first_token_s", time.perf_counter() - llm_started)
                    yield item
                else:
                    t0 = time.perf_counter()
                    speech = setup.tts.synthesize(spoken_text(item))
                    t1 = time.perf_counter()
                    if len(speech.audio) == 0:
                        continue
                    track = setup.lipsync.track(speech)
                    t2 = time.perf_counter()
                    tts_s += t1 - t0
                    lipsync_s += t2 - t1
                    clip = self._clip(turn_id, len(clips), item, speech, track, sum(s.duration_s for s in speeches))
                    speeches.append(speech)
                    clips.append(clip)
                    timings.setdefault("tts_first_s", t1 - t0)
                    timings.setdefault("first_audio_s", time.perf_counter() - started)
                    yield clip
            interrupted = interrupted or cancel.is_set()  # the producer stopped early because of the caller
        finally:
            cancel.set()  # stops the producer too, when this consumer fails or is closed
            # The producer notices a cancel at its next token and closes its LLM stream, which frees what the backend
            # holds (the local model's lock) before this turn returns; a backend stuck past its own timeout is left
            # to end in its daemon thread.
            producer.join(self.config.llm.timeout_s)
        if interrupted:
            raise TurnCancelled(CANCELLED)
        if reply is None:
            raise BackendError(LLM_STAGE, setup.llm.name, "its answer stream ended without the answer")
        timings.update(tts_s=tts_s, lipsync_s=lipsync_s, total_s=time.perf_counter() - started)
        yield self._complete(setup.tts, turn_id, reply, speeches, clips, timings, passages)

    def _clip(
        self, turn_id: str, index: int, text: str, speech: Speech, track: VisemeTrack, offset_s: float
    ) -> SpokenClip:
        path = self.audio_dir / f"{turn_id}-{index:02d}.wav"
        _write_audio(speech, path)
        return SpokenClip(
            turn_id=turn_id,
            index=index,
            text=text,
            wav_path=str(path),
            offset_s=offset_s,
            duration_s=speech.duration_s,
            track=track,
            emotion=self.stages.emotion.classify(text),
        )

    def _complete(
        self,
        tts: TTSBackend,
        turn_id: str,
        reply: Reply,
        speeches: list[Speech],
        clips: list[SpokenClip],
        timings: dict[str, float],
        passages: tuple[Passage, ...],
    ) -> TurnComplete:
        """Join the clips into one audio file and one track, and read the emotion of the whole reply."""
        rate = speeches[0].sample_rate if speeches else 22050
        audio = np.concatenate([s.audio for s in speeches]) if speeches else np.zeros(0, dtype=np.float32)
        whole = Speech(text=reply.text, audio=audio, sample_rate=rate, backend=tts.name)
        path = self.audio_dir / f"{turn_id}-turn.wav"
        _write_audio(whole, path)
        track = join_tracks([c.track.shifted(c.offset_s) for c in clips])
        metrics = (
            StageMetrics("llm", reply.backend, timings.get("llm_total_s", 0.0), timings.get("llm_first_token_s"),
                         {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}),
            StageMetrics("tts", tts.name, timings["tts_s"], timings.get("tts_first_s"),
                         {"characters": sum(len(c.text) for c in clips), "audio_s": whole.duration_s}),
            StageMetrics("lipsync", track.source, timings["lipsync_s"]),
        )
        emotion: Emotion = self.stages.emotion.classify(reply.text)
        # What the search found (not the document around it), unless the reply says the documents do not hold it.
        found = tuple(p for p in passages if p.score > 0)
        cited = () if found and coverage_rules().admits_not_knowing(reply.text) else found
        return TurnComplete(reply, emotion, str(path), track, dict(timings), metrics, cited)
