"""From a stored run to its trace in Jaeger, Tempo or Grafana: the link template.

Records keep the run's trace id and span ids (extras ``trace_id`` and ``span_id``);
``DECISIONTRACE_TRACE_URL`` says where a trace viewer shows them, for instance
``http://localhost:16686/trace/{trace_id}`` (Jaeger) or a Grafana Explore URL. Only the
placeholders ``{trace_id}``, ``{span_id}`` and ``{run_id}`` are replaced, so a template
may hold other braces (Grafana's JSON state) as they are. The terminal output, the JSON
output and the HTML report all build their links here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from decisiontrace.models import Decision, Run

__all__ = ["TRACE_URL_ENV_VAR", "run_trace_id", "span_id_of", "trace_url"]

#: The environment variable holding the link template.
TRACE_URL_ENV_VAR = "DECISIONTRACE_TRACE_URL"

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


def _extra(record: Run | Decision | Mapping[str, Any], name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return (record.model_extra or {}).get(name)


def run_trace_id(run: Run | Mapping[str, Any]) -> str | None:
    """The run's trace id (32 hex digits) as its record keeps it, or None."""
    value = _extra(run, "trace_id")
    return value if isinstance(value, str) and _TRACE_ID.match(value) else None


def span_id_of(record: Run | Decision | Mapping[str, Any]) -> str | None:
    """The span id (16 hex digits) a run or decision record keeps, or None."""
    value = _extra(record, "span_id")
    return value if isinstance(value, str) and _SPAN_ID.match(value) else None


def trace_url(
    run: Run | Mapping[str, Any],
    decision: Decision | Mapping[str, Any] | None = None,
    *,
    template: str | None = None,
) -> str | None:
    """The link to the run's trace (or to one decision's span in it), or None.

    Args:
        run: a Run, or a run record / summary dict holding ``trace_id``.
        decision: link to this decision's span (``{span_id}``); default the run span.
        template: the URL template; default ``$DECISIONTRACE_TRACE_URL``.

    Returns:
        The URL, or None without a template or when the record keeps no trace id.
    """
    if template is None:
        template = os.environ.get(TRACE_URL_ENV_VAR, "").strip()
    trace_id = run_trace_id(run)
    if not template or trace_id is None:
        return None
    span_id = span_id_of(decision) if decision is not None else span_id_of(run)
    run_id = (run.get("id") or run.get("run_id")) if isinstance(run, Mapping) else run.id
    return (
        template.replace("{trace_id}", trace_id)
        .replace("{span_id}", span_id or "")
        .replace("{run_id}", quote(str(run_id or ""), safe=""))
    )
