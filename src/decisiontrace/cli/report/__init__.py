"""``decisiontrace report --html``: one self-contained HTML page about stored runs.

Every run is listed collapsed, with search, filters (status, goal, node, time) and
sorting; opening a run shows each decision with its options side by side (the chosen one
marked, confidence, pros and cons), the reasoning, the outcome, tokens, latency,
problems and evaluations, and a link to the run's trace when a URL template is set. The
statistics follow as inline SVG charts and tables. Inline CSS and script only, nothing
fetched, so the page opens offline and can be mailed or attached to a ticket.

Modules: :mod:`._page` (the page and the runs list), :mod:`._payload` (the decision
details as JSON safe inside the page), :mod:`._assets` (stylesheet and script),
:mod:`._charts` (the statistics section).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from decisiontrace.cli.report._page import render_report
from decisiontrace.cli.report._payload import trace_id_of
from decisiontrace.models import Run

__all__ = ["TRACE_URL_ENV", "render_report", "trace_url_from_env"]

#: A URL template with ``{trace_id}``, e.g. ``http://localhost:16686/trace/{trace_id}``.
TRACE_URL_ENV = "DECISIONTRACE_TRACE_URL"


def trace_url_from_env() -> Callable[[Run], str | None] | None:
    """A run -> trace link function from ``DECISIONTRACE_TRACE_URL``, or None if unset."""
    template = os.environ.get(TRACE_URL_ENV, "").strip()
    if "{trace_id}" not in template:
        return None

    def link(run: Run) -> str | None:
        trace_id = trace_id_of(run)
        return None if trace_id is None else template.replace("{trace_id}", trace_id)

    return link
