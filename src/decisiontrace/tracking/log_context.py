"""Log correlation: the current run's ids on every log record made inside it.

The original tracker called ``set_trace_context`` so that its log formatter could add
trace and run ids. Here the same ids come from the current run and the current
OpenTelemetry span, through a standard :class:`logging.Filter`.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from decisiontrace.tracking import _context as ctx

#: The attributes :class:`RunContextFilter` sets on every record ("" outside a run).
FIELDS = ("trace_id", "span_id", "run_id", "execution_id", "goal_id", "node_id")


class RunContextFilter(logging.Filter):
    """Adds ``trace_id``, ``span_id``, ``run_id``, ``execution_id``, ``goal_id`` and
    ``node_id`` to each record (empty strings outside a run); never drops a record.

    Attach it to a handler, so records propagated from every logger get the fields::

        handler.addFilter(RunContextFilter())
        handler.setFormatter(logging.Formatter("%(run_id)s %(node_id)s %(message)s"))
    """

    def filter(self, record: logging.LogRecord) -> bool:
        live = ctx.current_run.get()
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid and (live is None or span_context.trace_id == live.trace_id):
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        elif live is not None:
            # The current span belongs to another trace (e.g. the request that started
            # the run): the run is its own trace, so report the run span's ids.
            run_context = live.span.get_span_context()
            record.trace_id = format(run_context.trace_id, "032x")
            record.span_id = format(run_context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        if live is not None:
            record.run_id = live.run_id
            record.execution_id = live.execution_id
            record.goal_id = live.goal_id
            record.node_id = ctx.current_node.get() or live.current_node
        else:
            record.run_id = record.execution_id = record.goal_id = ""
            record.node_id = ctx.current_node.get() or ""
        return True


def install_log_context(logger: logging.Logger | None = None) -> RunContextFilter:
    """Attach one :class:`RunContextFilter` to every handler of ``logger`` (default: root).

    Returns the filter, so it can be removed again with ``handler.removeFilter``.
    """
    target = logger if logger is not None else logging.getLogger()
    log_filter = RunContextFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RunContextFilter) for f in handler.filters):
            handler.addFilter(log_filter)
    return log_filter
