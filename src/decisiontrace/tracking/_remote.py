"""Runs that travel with the trace context: the baggage entry naming a run, read and written.

A run's context (what ``tracker.run`` and ``@agent`` make current) carries, besides the
run span, a W3C baggage entry naming the run. ``opentelemetry.propagate.inject`` and
every OpenTelemetry client instrumentation send it along with ``traceparent``; in the
process that extracts and attaches that context, recording calls find the entry and
record into the remote run (see ``DecisionTracker._remote_run``). What such a process
records is a *fragment* of the run: its decision and problem spans carry
``decisiontrace.fragment.id``, and the processor assembles them into a record of their
own that stores merge with the run's.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode

from opentelemetry import baggage, propagate
from opentelemetry.context import Context

from decisiontrace.spanmodel import _ids
from decisiontrace.spanmodel import semconv as sc

logger = logging.getLogger("decisiontrace")

#: Goal ids longer than this are cut in the baggage: it travels with every request.
_MAX_GOAL = 128
_MAX_VALUE = 1024

_get_baggage = baggage.get_baggage
#: Text that URL encoding (``quote_plus``) leaves as it is: ids and most goal ids.
_URL_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


class RunRef(NamedTuple):
    """What the baggage entry says about a run."""

    run_id: str
    execution_id: str
    goal_id: str


def baggage_value(run_id: str, execution_id: str, goal_id: str) -> str:
    """The value of the run's baggage entry (text that is not UTF-8 becomes ``?``)."""
    goal = goal_id[:_MAX_GOAL]
    if _URL_PLAIN.fullmatch(f"{run_id}{execution_id}{goal}"):
        # What urlencode makes of it, without its ~6 µs (every run pays this).
        return f"run={run_id}&exec={execution_id}&goal={goal}"
    return urlencode({"run": run_id, "exec": execution_id, "goal": goal}, errors="replace")


def with_value(context: Context, value: str) -> Context:
    """``context`` with the baggage entry naming a run (``value`` from :func:`baggage_value`)."""
    return baggage.set_baggage(sc.BAGGAGE_RUN, value, context)


def current_value(context: Context | None = None) -> str | None:
    """The raw value of the run's baggage entry in ``context`` (default: the current one)."""
    value = _get_baggage(sc.BAGGAGE_RUN, context)
    return value if isinstance(value, str) else None


def parse(value: Any) -> RunRef | None:
    """The run a baggage value names, or None if it names none (or is not ours)."""
    if not isinstance(value, str) or not value or len(value) > _MAX_VALUE:
        return None
    try:
        fields = parse_qs(value, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    run_id = (fields.get("run") or [""])[0]
    if not run_id:
        return None
    return RunRef(run_id, (fields.get("exec") or [""])[0], (fields.get("goal") or [""])[0])


def current_ref(context: Context | None = None) -> RunRef | None:
    """The remote run named in the baggage of ``context`` (default: the current one)."""
    value = _get_baggage(sc.BAGGAGE_RUN, context)
    return None if value is None else parse(value)


def service_name(tracer: Any) -> str:
    """The ``service.name`` of the provider behind ``tracer`` (or the environment's)."""
    real = getattr(tracer, "_real_tracer", None) or tracer  # the API's ProxyTracer
    resource = getattr(real, "resource", None)
    attributes = getattr(resource, "attributes", None) or {}
    name = attributes.get("service.name")
    if isinstance(name, str) and name:
        return name
    return os.environ.get("OTEL_SERVICE_NAME") or "unknown_service"


def new_fragment_id(service: str) -> str:
    """A fragment id unique to this process and recording: ``{service}:{pid}:{8 hex}``."""
    return _ids.new_fragment_id(service)


_propagator_checked = False


def check_propagator() -> None:
    """Warn once if the global propagator would not carry the baggage entry.

    With ``OTEL_PROPAGATORS`` set without ``baggage`` (or a propagator installed that
    lacks it), ``traceparent`` still travels but the run does not: other processes
    cannot record into it.
    """
    global _propagator_checked
    if _propagator_checked:
        return
    _propagator_checked = True
    try:
        fields = propagate.get_global_textmap().fields
    except Exception:  # expected: the user's propagator, not ours to check
        return
    if "baggage" not in fields:
        logger.warning(
            "decisiontrace: the global propagator does not carry W3C baggage (fields: %s), "
            "so runs do not travel to other processes; add 'baggage' to OTEL_PROPAGATORS "
            "(e.g. 'tracecontext,baggage') or use decisiontrace.propagation.inject",
            ", ".join(sorted(fields)),
        )


__all__ = [
    "RunRef",
    "baggage_value",
    "check_propagator",
    "current_ref",
    "current_value",
    "new_fragment_id",
    "parse",
    "service_name",
    "with_value",
]
