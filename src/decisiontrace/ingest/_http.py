"""OTLP/HTTP: ``POST /v1/traces`` (protobuf or JSON, optionally gzip), ``POST /v1/logs``
(judgements of decisions, see ``_logs``) and ``GET /health``.

Answers as the OTLP specification asks: 200 with an ``ExportTraceServiceResponse`` (a
``partial_success`` naming spans that could not be read), 400 with the reason for a
request that cannot be read at all, 401 without the right bearer token, 413 for a body
over the limit, and the retryable 429 (queue full) and 503 (store failing, too many
requests at once) with ``Retry-After``. Error bodies are a ``google.rpc.Status`` in the
request's encoding.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import ssl
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from decisiontrace.ingest._logs import LOGS_PATH, parse_logs, receive_logs
from decisiontrace.ingest._receiver import RETRY_AFTER_SECONDS, Receiver, Verdict
from decisiontrace.ingest._spans import Decoded, MalformedRequest, from_json, from_protobuf

logger = logging.getLogger("decisiontrace.ingest")

TRACES_PATH = "/v1/traces"
HEALTH_PATHS = ("/health", "/healthz")
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"


class IngestHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the ingest settings for its handlers."""

    daemon_threads = True
    # Concurrent exporters each keep a connection: more than the default 5 may queue.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        receiver: Receiver,
        *,
        token: str | None,
        max_request_bytes: int,
        max_concurrency: int,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(address, _Handler)
        self.receiver = receiver
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.slots = threading.BoundedSemaphore(max_concurrency)
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection, on its own thread; the TLS handshake happens here too,
        so a slow client cannot hold up the accept loop."""
        if self.tls is not None:
            request.settimeout(_Handler.timeout)
            try:
                wrapped = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as error:
                logger.debug("TLS handshake with %s failed: %s", client_address, error)
                return
            try:
                super().finish_request(wrapped, client_address)
            finally:
                wrapped.close()  # the server closes only the socket it accepted
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection's error (a client gone mid-request): logged, never fatal."""
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: IngestHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection
    timeout = 30  # seconds a silent client may hold a connection (slow-loris bound)
    server_version = "decisiontrace-ingest"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # --- responses --------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str, as_json: bool, **headers: str) -> None:
        if as_json:
            body = json.dumps({"code": code, "message": message}).encode()
            self._send(status, body, _JSON, **headers)
        else:
            status_message = status_pb2.Status(code=code, message=message)
            self._send(status, status_message.SerializeToString(), _PROTOBUF, **headers)

    def _retry_later(self, status: int, message: str, as_json: bool) -> None:
        self._error(
            status, code_pb2.UNAVAILABLE, message, as_json, Retry_After=str(RETRY_AFTER_SECONDS)
        )

    # --- methods ----------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] in HEALTH_PATHS:
            health = self.server.receiver.health()
            status = 200 if health["status"] == "ok" else 503
            self._send(status, json.dumps(health).encode(), _JSON)
            return
        self._error(404, code_pb2.NOT_FOUND, f"no such path; POST traces to {TRACES_PATH}", True)

    def do_POST(self) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        as_json = content_type == _JSON
        receiver = self.server.receiver
        path = self.path.split("?", 1)[0]
        if path not in (TRACES_PATH, LOGS_PATH):
            self._drain_or_close()
            self._error(404, code_pb2.NOT_FOUND, f"POST traces to {TRACES_PATH}", as_json)
            return
        if not self._authorized():
            receiver.count("rejected_unauthorized")
            self.close_connection = True
            self._error(401, code_pb2.UNAUTHENTICATED, "missing or wrong bearer token", as_json,
                        WWW_Authenticate="Bearer")  # fmt: skip
            return
        body = self._body(as_json)
        if body is None:
            return
        if not self.server.slots.acquire(blocking=False):
            receiver.count("rejected_overloaded")
            self._retry_later(503, "too many requests at once; retry later", as_json)
            return
        try:
            if path == LOGS_PATH:
                self._export_logs(body, content_type, as_json)
            else:
                self._export(body, content_type, as_json)
        finally:
            self.server.slots.release()

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization") or ""
        scheme, _, credentials = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        )

    def _body(self, as_json: bool) -> bytes | None:
        """The request body, decompressed; None when an error was answered."""
        limit = self.server.max_request_bytes
        receiver = self.server.receiver
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            self._error(411, code_pb2.INVALID_ARGUMENT, "Content-Length is required", as_json)
            return None
        length = int(length_header)
        if length > limit:
            receiver.count("rejected_too_large")
            self.close_connection = True  # the body is not read
            message = f"request of {length} bytes is over the limit of {limit}"
            self._error(413, code_pb2.INVALID_ARGUMENT, message, as_json)
            return None
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding in ("identity", ""):
            return body
        if encoding not in ("gzip", "deflate"):
            receiver.count("rejected_malformed")
            self._error(415, code_pb2.INVALID_ARGUMENT,
                        f"unsupported Content-Encoding {encoding!r}", as_json)  # fmt: skip
            return None
        try:
            inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            data = inflater.decompress(body, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as error:
            receiver.count("rejected_malformed")
            self._error(400, code_pb2.INVALID_ARGUMENT, f"cannot decompress: {error}", as_json)
            return None
        if len(data) > limit:
            receiver.count("rejected_too_large")
            message = f"decompressed request is over the limit of {limit} bytes"
            self._error(413, code_pb2.INVALID_ARGUMENT, message, as_json)
            return None
        return data

    def _drain_or_close(self) -> None:
        length = self.headers.get("Content-Length") or ""
        if length.isdigit() and int(length) <= self.server.max_request_bytes:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _export(self, body: bytes, content_type: str, as_json: bool) -> None:
        receiver = self.server.receiver
        try:
            if as_json:
                decoded = from_json(json.loads(body), receiver.links)
            elif content_type in (_PROTOBUF, ""):
                decoded = from_protobuf(body, receiver.links)
            else:
                receiver.count("rejected_malformed")
                self._error(415, code_pb2.INVALID_ARGUMENT,
                            f"unsupported Content-Type {content_type!r}; send "
                            f"{_PROTOBUF} or {_JSON}", False)  # fmt: skip
                return
        except (MalformedRequest, ValueError, RecursionError) as error:
            receiver.count("rejected_malformed")
            self._error(400, code_pb2.INVALID_ARGUMENT, f"malformed OTLP request: {error}", as_json)
            return
        verdict = receiver.submit(decoded)
        if verdict is Verdict.OVERLOADED:
            self._retry_later(429, "the ingest queue is full; retry later", as_json)
        elif verdict is Verdict.STORE_FAILING:
            self._retry_later(503, "the run store is not writable right now; retry later", as_json)
        else:
            self._accepted(decoded, as_json)

    def _export_logs(self, body: bytes, content_type: str, as_json: bool) -> None:
        """Judgements of decisions (evaluation events): stored with their decisions."""
        receiver = self.server.receiver
        try:
            if as_json:
                document = json.loads(body)
            elif content_type in (_PROTOBUF, ""):
                document = parse_logs(body)
            else:
                receiver.count("rejected_malformed")
                self._error(415, code_pb2.INVALID_ARGUMENT,
                            f"unsupported Content-Type {content_type!r}; send "
                            f"{_PROTOBUF} or {_JSON}", False)  # fmt: skip
                return
        except (ValueError, RecursionError) as error:
            receiver.count("rejected_malformed")
            self._error(400, code_pb2.INVALID_ARGUMENT, f"malformed OTLP request: {error}", as_json)
            return
        try:
            response = receive_logs(receiver, document)
        except Exception:  # expected: the user's store failed; the exporter retries
            logger.exception("decisiontrace: storing judgements failed")
            self._retry_later(503, "the run store is not writable right now; retry later", as_json)
            return
        if as_json:
            self._send(200, json.dumps(MessageToDict(response)).encode(), _JSON)
        else:
            self._send(200, response.SerializeToString(), _PROTOBUF)

    def _accepted(self, decoded: Decoded, as_json: bool) -> None:
        response = ExportTraceServiceResponse()
        if decoded.rejected:
            response.partial_success.rejected_spans = decoded.rejected
            response.partial_success.error_message = "; ".join(decoded.errors)
        if as_json:
            body = json.dumps(MessageToDict(response)).encode()
            self._send(200, body, _JSON)
        else:
            self._send(200, response.SerializeToString(), _PROTOBUF)


__all__ = ["HEALTH_PATHS", "TRACES_PATH", "IngestHTTPServer"]
