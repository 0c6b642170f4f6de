"""The original framework's tracker API, recording through decisiontrace.

An agent written against the original switches by changing its imports only::

    from decisiontrace.compat.hive import StreamDecisionTracker, StreamRuntimeAdapter

Signatures, positional order, return values, id formats and the
``outcome_aggregator`` calls are the original's, and so is ``storage``: whatever the
original accepted (see :mod:`decisiontrace.compat._storage`). What changes underneath:
every run and decision is an OpenTelemetry span, the record is rebuilt from those
spans, bad input warns instead of raising, and ``end_run`` works without an event loop.

Unless a ``tracer_provider`` is given, trackers record through tracer providers private to
decisiontrace.compat, one per store plus one without processors, shared by every tracker: a
tracker owns no thread and nothing outlives it but the runs it stored. With a
``tracer_provider``, the spans go there, and the caller decides what stores them.
"""

from decisiontrace.compat._adapter import DecisionTracker, StreamRuntimeAdapter
from decisiontrace.compat._stream import StreamDecisionTracker

__all__ = ["DecisionTracker", "StreamDecisionTracker", "StreamRuntimeAdapter"]
