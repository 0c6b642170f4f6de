"""``decisiontrace report --html``: one self-contained HTML page about stored runs.

Every run is listed collapsed, with search, filters (status, goal, node, time) and
sorting; opening a run shows each decision with its options side by side (the chosen one
marked, confidence, pros and cons), the reasoning, the outcome, tokens, latency,
problems and evaluations, and a link to the run's trace when ``DECISIONTRACE_TRACE_URL``
is set (built by :mod:`decisiontrace.cli._links`). The
statistics follow as inline SVG charts and tables. Inline CSS and script only, nothing
fetched, so the page opens offline and can be mailed or attached to a ticket.

Modules: :mod:`._page` (the page and the runs list), :mod:`._payload` (the decision
details as JSON safe inside the page), :mod:`._assets` (stylesheet and script),
:mod:`._charts` (the statistics section).
"""

from __future__ import annotations

from decisiontrace.cli.report._page import render_report

__all__ = ["render_report"]
