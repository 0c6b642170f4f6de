"""An OpenAI-compatible server on 127.0.0.1 that reports known token usage.

It answers ``POST /v1/chat/completions`` (plain, and streamed as server-sent events,
with a final usage chunk when ``stream_options.include_usage`` is set) and
``POST /v1/embeddings``, enough for the ``openai`` client and ``langchain-openai``.
Every request is kept, so tests can check what the client sent.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The usage every plain chat completion reports.
CHAT_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
#: The usage a streamed chat completion reports in its last chunk.
STREAM_USAGE = {"prompt_tokens": 13, "completion_tokens": 9, "total_tokens": 22}
#: The usage every embeddings request reports.
EMBEDDING_USAGE = {"prompt_tokens": 5, "total_tokens": 5}
#: The pieces a streamed answer is sent in.
STREAM_PIECES = ["The ", "answer ", "is ", "kb."]
CHAT_ANSWER = "kb"
_EMBEDDING = [0.25, -0.5, 0.125]


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append((self.path, body))
        if self.path.endswith("/chat/completions"):
            if body.get("stream"):
                self._stream(body)
            else:
                self._json(_completion(body))
        elif self.path.endswith("/embeddings"):
            self._json(_embeddings(body))
        else:
            self._json({"error": {"message": f"no route {self.path}"}}, status=404)

    def _json(self, payload: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        model = body.get("model", "gpt-4o-mini")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for index, piece in enumerate(STREAM_PIECES):
            delta: dict[str, Any] = {"content": piece}
            if index == 0:
                delta["role"] = "assistant"
            self._event(_chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}]))
        self._event(_chunk(model, [{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if include_usage:
            self._event(_chunk(model, [], usage=STREAM_USAGE))
        self._write(b"data: [DONE]\n\n")
        self._write(b"")  # the last chunk of the chunked encoding

    def _event(self, payload: dict[str, Any]) -> None:
        self._write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body.get("model", "gpt-4o-mini"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CHAT_ANSWER},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": CHAT_USAGE,
    }


def _chunk(
    model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    if body.get("encoding_format") == "base64":
        vector: Any = base64.b64encode(struct.pack(f"<{len(_EMBEDDING)}f", *_EMBEDDING)).decode()
    else:
        vector = _EMBEDDING
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)],
        "model": body.get("model", "text-embedding-3-small"),
        "usage": EMBEDDING_USAGE,
    }


class FakeOpenAI(ThreadingHTTPServer):
    """The server, serving on a thread of its own from construction until ``close()``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
