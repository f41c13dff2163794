"""A real local HTTP server that emulates Databricks model serving and an OpenAI-compatible API, for tests.

Routes:
    GET  /.well-known/databricks-config          404, as on workspaces without host metadata
    POST /serving-endpoints/{name}/invocations   Databricks non-streaming chat (what ``query()`` calls)
    POST /serving-endpoints/chat/completions     Databricks OpenAI-compatible route, SSE when ``stream`` is true
    POST /v1/chat/completions                    OpenAI-compatible route, SSE when ``stream`` is true
    POST /api/2.0/vector-search/indexes/{name}/query   Vector Search: ``vector_rows`` (dicts with a "score"),
                                                 best first, cut to ``num_results``, projected onto ``columns``
    GET  /oidc/.well-known/oauth-authorization-server   OAuth metadata (what the SDK reads for client credentials)
    POST /oidc/v1/token                          OAuth M2M: a new token per call, ``oauth-token-<n>`` (or always
                                                 ``oauth_fixed_token`` when set), valid for ``oauth_lifetime_s``;
                                                 the tokens issued are in ``oauth_tokens``

Every request is recorded (method, path, headers, JSON body). Knobs on the server change its behaviour:
``status`` forces an error status, ``delay_s`` stalls before answering (to provoke client timeouts),
``missing_routes`` answers 404 on the listed paths, ``parts_content`` returns Databricks' list-of-parts content,
``stream_usage`` sends token usage at the end of a stream (Databricks always, OpenAI only when asked),
``hold_after_first`` pauses a stream after its first content chunk until the event is set (at most HOLD_S),
``first_token_s`` and ``token_interval_s`` pace a stream as a real endpoint does (time to the first content chunk,
then between chunks; the load benchmark uses them).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

VECTOR_SEARCH_PREFIX = "/api/2.0/vector-search/indexes/"
OAUTH_METADATA = "/oidc/.well-known/oauth-authorization-server"
OAUTH_TOKEN = "/oidc/v1/token"
HOLD_S = 5.0
DEFAULT_ANSWER = "The sky looks blue because air scatters blue sunlight the most."


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeServing:
    """Behaviour knobs and the request log, shared with the handler threads."""

    answer: str = DEFAULT_ANSWER
    status: int = 200
    delay_s: float = 0.0
    missing_routes: tuple[str, ...] = ()
    parts_content: bool = False
    stream_usage: bool = True
    hold_after_first: threading.Event | None = None
    first_token_s: float = 0.0
    token_interval_s: float = 0.0
    vector_rows: list[dict[str, Any]] = field(default_factory=list)
    oauth_lifetime_s: int = 3600
    oauth_fixed_token: str = ""
    oauth_tokens: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def pieces(self, max_tokens: int | None) -> tuple[list[str], str]:
        """The answer as token-like pieces (one per word), capped at ``max_tokens``, and the finish reason."""
        words = self.answer.split(" ")
        pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
        if max_tokens is not None and len(pieces) > max_tokens:
            return pieces[:max_tokens], "length"
        return pieces, "stop"

    @staticmethod
    def prompt_tokens(body: dict[str, Any]) -> int:
        """A deterministic prompt size: the number of words in all messages."""
        return sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))

    def posts(self, path_suffix: str) -> list[RecordedRequest]:
        """Recorded POST requests whose path ends with ``path_suffix``."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(path_suffix)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._record(None)
        if self.path == OAUTH_METADATA:
            base = "http://{}:{}".format(*self.server.server_address[:2])
            self._send_json(200, {"issuer": f"{base}/oidc", "authorization_endpoint": f"{base}/oidc/v1/authorize",
                                  "token_endpoint": f"{base}{OAUTH_TOKEN}"})
            return
        self._send_json(404, {"error_code": "NOT_FOUND", "message": "no host metadata"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        else:
            body = json.loads(raw or b"{}")
        self._record(body)
        fake = self.server.fake
        if self.path == OAUTH_TOKEN:
            self._oauth_token(body)
            return
        if fake.delay_s and fake.released.wait(fake.delay_s):
            return
        if self.path in fake.missing_routes:
            self._send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No route {self.path}"})
        elif fake.status != 200:
            self._send_json(fake.status, {"error_code": "INTERNAL_ERROR", "message": f"fake failure {fake.status}"})
        elif self.path.endswith("/invocations"):
            self._invocations(body)
        elif self.path.endswith("/chat/completions"):
            self._chat_completions(body)
        elif self.path.startswith(VECTOR_SEARCH_PREFIX) and self.path.endswith("/query"):
            self._vector_search_query(body)
        else:
            self._send_json(404, {"error_code": "NOT_FOUND", "message": f"No route {self.path}"})

    def _record(self, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.fake.requests.append(RecordedRequest(self.command, self.path, headers, body))

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
        prompt = FakeServing.prompt_tokens(body)
        return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens}

    def _invocations(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        pieces, finish = fake.pieces(body.get("max_tokens"))
        text = "".join(pieces)
        content: Any = text
        if fake.parts_content:
            content = [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
                       {"type": "text", "text": text}]
        self._send_json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": self._usage(body, len(pieces)),
        })

    def _chat_completions(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        pieces, finish = fake.pieces(body.get("max_tokens"))
        if not body.get("stream"):
            self._invocations(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": body.get("model", "fake-model")}
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        # Databricks sends usage unasked; OpenAI servers only with stream_options.include_usage.
        asked = (body.get("stream_options") or {}).get("include_usage") or self.path.startswith("/serving-endpoints/")
        if fake.stream_usage and asked:
            chunks.append({**base, "choices": [], "usage": self._usage(body, len(pieces))})
        for i, chunk in enumerate(chunks):
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                time.sleep(fake.first_token_s if i == 1 else fake.token_interval_s)
            self._send_chunk(f"data: {json.dumps(chunk)}\n\n")
            if i == 1 and fake.hold_after_first is not None:
                fake.hold_after_first.wait(HOLD_S)
        self._send_chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _send_chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- OAuth --------------------------------------------------------------------------------------------------

    def _oauth_token(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        if body.get("grant_type") != "client_credentials":
            self._send_json(400, {"error": "unsupported_grant_type"})
            return
        token = fake.oauth_fixed_token or f"oauth-token-{len(fake.oauth_tokens) + 1}"
        fake.oauth_tokens.append(token)
        self._send_json(200, {"access_token": token, "token_type": "Bearer", "expires_in": fake.oauth_lifetime_s,
                              "scope": body.get("scope", "all-apis")})

    # -- Vector Search ------------------------------------------------------------------------------------------

    def _vector_search_query(self, body: dict[str, Any]) -> None:
        """Answer like Databricks Vector Search: the requested columns plus "score", one array per row."""
        columns = [*body.get("columns", []), "score"]
        rows = self.server.fake.vector_rows[: body.get("num_results", 10)]
        self._send_json(200, {
            "manifest": {"column_count": len(columns), "columns": [{"name": name} for name in columns]},
            "result": {"row_count": len(rows), "data_array": [[row.get(name) for name in columns] for row in rows]},
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeServing

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or close keep-alive connections are part of the tests, not server errors."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServingServer:
    """Run a FakeServing on 127.0.0.1 at a random port in a background thread; use as a context manager."""

    def __init__(self, fake: FakeServing | None = None) -> None:
        self.fake = fake or FakeServing()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self.fake
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.released.set()
        self._server.shutdown()
        self._server.server_close()


FAKE_TOKEN = "dapi-fake-secret-0123456789"
"""The bearer token the tests give the SDK; asserted never to appear in messages or logs."""

