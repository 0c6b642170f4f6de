"""Carry a run to another process over a transport no OpenTelemetry instrumentation covers.

OpenTelemetry's HTTP and gRPC client and server instrumentations carry the current run
by themselves (``traceparent`` plus the run's baggage entry). For anything else, a
queue message's headers or an MCP request's ``_meta``, put the context into a dict of
strings on the sending side and attach it on the receiving side::

    # sender, inside a run
    message.headers = decisiontrace.propagation.inject({})

    # receiver
    with decisiontrace.propagation.attached(message.headers):
        handle(message)   # @dt.decision functions record into the sender's run

Both use the global propagator (``OTEL_PROPAGATORS``, ``tracecontext,baggage`` by
default) and, should it lack W3C baggage, still carry the run's baggage entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.baggage import get_baggage, set_baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from decisiontrace.spanmodel import semconv as sc

_baggage_propagator = W3CBaggagePropagator()


def _global_carries_baggage() -> bool:
    return "baggage" in propagate.get_global_textmap().fields


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context and run into ``carrier`` and return it.

    Args:
        carrier: a mutable mapping of header names to values (e.g. ``{}``).

    Returns:
        ``carrier``, with ``traceparent`` (and ``tracestate``) and ``baggage``.
    """
    propagate.inject(carrier)
    if not _global_carries_baggage():
        value = get_baggage(sc.BAGGAGE_RUN)
        if isinstance(value, str):
            only_run = set_baggage(sc.BAGGAGE_RUN, value, otel_context.Context())
            _baggage_propagator.inject(carrier, only_run)
    return carrier


def extract(carrier: Mapping[str, Any]) -> otel_context.Context:
    """The context ``carrier`` carries (trace context and run), on top of the current one."""
    context = propagate.extract(carrier)
    if not _global_carries_baggage():
        remote = _baggage_propagator.extract(carrier, otel_context.Context())
        value = get_baggage(sc.BAGGAGE_RUN, remote)
        if isinstance(value, str):
            context = set_baggage(sc.BAGGAGE_RUN, value, context)
    return context


@contextmanager
def attached(carrier: Mapping[str, Any]) -> Iterator[otel_context.Context]:
    """Make the context ``carrier`` carries current for the block (then restore)."""
    token = otel_context.attach(extract(carrier))
    try:
        yield otel_context.get_current()
    finally:
        otel_context.detach(token)


__all__ = ["attached", "extract", "inject"]
