"""The OTLP ingest service: receives traces over gRPC and HTTP, stores the runs in them."""

from __future__ import annotations

import gc
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from decisiontrace.ingest._grpc import grpc_server
from decisiontrace.ingest._http import IngestHTTPServer
from decisiontrace.ingest._receiver import Receiver
from decisiontrace.stores import RunStore, open_store

logger = logging.getLogger("decisiontrace.ingest")

#: Environment variable holding the bearer token clients must send.
TOKEN_ENV_VAR = "DECISIONTRACE_INGEST_TOKEN"

DEFAULT_GRPC = "127.0.0.1:4317"
DEFAULT_HTTP = "127.0.0.1:4318"


def parse_address(address: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; ValueError naming ``what`` otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:4318), got {address!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class IngestService:
    """An OTLP trace receiver that assembles runs as the processor does and stores them.

    Args:
        store: the store (or its URL) runs are written to.
        grpc_address: ``host:port`` for OTLP/gRPC, or None for none. Port 0 picks one.
        http_address: ``host:port`` for OTLP/HTTP and ``/health``, or None for none.
        token: bearer token every request must carry; None for none.
        tls_cert / tls_key: PEM files; both given, both protocols serve TLS only.
        max_request_bytes: larger requests are refused (413 / RESOURCE_EXHAUSTED).
        max_concurrency: requests handled at once per protocol; beyond it HTTP answers
            503 with Retry-After and gRPC RESOURCE_EXHAUSTED.
        max_queue_spans: spans waiting to be assembled; a request that would go over is
            refused with 429 / UNAVAILABLE, so the sender retries later.
        receiver_options: more :class:`~decisiontrace.ingest._receiver.Receiver` options.

    Raises:
        ValueError: bad configuration (address, sizes, only one of cert and key).
    """

    def __init__(
        self,
        store: RunStore | str,
        *,
        grpc_address: str | None = DEFAULT_GRPC,
        http_address: str | None = DEFAULT_HTTP,
        token: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        max_request_bytes: int = 16 * 1024 * 1024,
        max_concurrency: int = 16,
        max_queue_spans: int = 200_000,
        **receiver_options: Any,
    ) -> None:
        if grpc_address is None and http_address is None:
            raise ValueError("give at least one of grpc_address and http_address")
        for name, value in (
            ("max_request_bytes", max_request_bytes),
            ("max_concurrency", max_concurrency),
            ("max_queue_spans", max_queue_spans),
        ):
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both a certificate and a key file")
        if token is not None and not token.strip():
            raise ValueError("the bearer token must not be empty")
        self._http_address = None if http_address is None else parse_address(http_address, "http")
        if grpc_address is not None:
            parse_address(grpc_address, "grpc")
        self._grpc_address = grpc_address
        self._token = token
        self._tls_files = None if tls_cert is None else (tls_cert, tls_key or "")
        self._limits = (max_request_bytes, max_concurrency)
        self.store = store if isinstance(store, RunStore) else open_store(store)
        self.receiver = Receiver(self.store, max_queue_spans=max_queue_spans, **receiver_options)
        self._http: IngestHTTPServer | None = None
        self._grpc: Any = None
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    def start(self) -> None:
        """Bind and start serving. Raises OSError if an address cannot be bound."""
        max_request_bytes, max_concurrency = self._limits
        tls_context = None
        tls_pem = None
        if self._tls_files is not None:
            cert, key = self._tls_files
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_context.load_cert_chain(cert, key)
            with open(key, "rb") as key_file, open(cert, "rb") as cert_file:
                tls_pem = (key_file.read(), cert_file.read())
        try:
            if self._http_address is not None:
                self._http = IngestHTTPServer(
                    self._http_address, self.receiver, token=self._token,
                    max_request_bytes=max_request_bytes, max_concurrency=max_concurrency,
                    tls=tls_context,
                )  # fmt: skip
                self.http_port = self._http.server_address[1]
            if self._grpc_address is not None:
                self._grpc, self.grpc_port = grpc_server(
                    self.receiver, self._grpc_address, token=self._token,
                    max_request_bytes=max_request_bytes, max_concurrency=max_concurrency,
                    tls=tls_pem,
                )  # fmt: skip
                self._grpc.start()
        except BaseException:
            self._close_listeners()
            raise
        if self._http is not None:
            thread = threading.Thread(
                target=self._http.serve_forever, name="otlp-http", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _close_listeners(self) -> None:
        if self._http is not None:
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(None)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests, finish those in flight, and store everything held."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._grpc is not None:
            self._grpc.stop(grace=min(5.0, timeout / 2)).wait()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.receiver.shutdown(timeout)

    def serve_until_signal(self, on_started: Callable[[], None] | None = None) -> None:
        """Start, serve until SIGTERM or SIGINT (main thread only), then :meth:`stop`.

        The signal handlers are in place before the listeners bind, so a signal that comes
        as soon as the service answers still stores what it holds (the default SIGTERM
        would kill the process). ``on_started`` runs once the listeners are bound. Raises
        OSError, as :meth:`start`, if an address cannot be bound.

        This is the process's main loop (``decisiontrace serve``), so it also sets the
        process's garbage collector for a server (see :func:`tune_garbage_collector`).
        """
        tune_garbage_collector()
        wake = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("decisiontrace ingest: signal %d, storing what is held", signum)
            wake.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            try:
                if on_started is not None:
                    on_started()
                while not wake.wait(1.0):
                    pass
            finally:
                self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


#: Allocations between young-generation collections in the service (CPython's default
#: is 700). Every request allocates a few objects per attribute and span, nearly all
#: freed by reference counting; collecting every 700 of them cost 6-8% of the CPU.
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Collect less often, and never rescan what start-up built (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def token_from_environment() -> str | None:
    """The bearer token from ``$DECISIONTRACE_INGEST_TOKEN`` (None if unset or empty)."""
    return os.environ.get(TOKEN_ENV_VAR) or None


__all__ = [
    "DEFAULT_GRPC",
    "DEFAULT_HTTP",
    "TOKEN_ENV_VAR",
    "IngestService",
    "parse_address",
    "token_from_environment",
    "tune_garbage_collector",
]
