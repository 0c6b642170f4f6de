"""decisiontrace: an AI agent's decisions as first-class OpenTelemetry telemetry.

A run is a root span, each decision a child span carrying its options and outcome;
:class:`RunRecordProcessor` rebuilds full :class:`Run` records from the spans and
stores them (SQLite by default).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from decisiontrace._version import __version__
from decisiontrace.decorators import (
    agent,
    choose,
    decision,
    default_tracker,
    node,
    set_default_tracker,
)

# Not lazy: the submodule of the same name would shadow the function once imported.
from decisiontrace.rebuild import RebuildResult, rebuild
from decisiontrace.spanmodel._kinds import DecisionType, RunStatus
from decisiontrace.spanmodel._redact import configure_redaction
from decisiontrace.stores import RunStore, open_store
from decisiontrace.tracking._context import ContextThreadPoolExecutor, bind_context
from decisiontrace.tracking.log_context import RunContextFilter, install_log_context
from decisiontrace.tracking.tracker import DecisionTracker

if TYPE_CHECKING:
    from decisiontrace import integrations
    from decisiontrace.evaluation import Judgement, evaluate, judgements_of
    from decisiontrace.models import (
        Decision,
        DecisionEvaluation,
        Option,
        Outcome,
        Problem,
        Run,
        RunMetrics,
        RunSummary,
    )
    from decisiontrace.pipeline.processor import RunRecordProcessor
    from decisiontrace.pipeline.sampling import (
        KeepEveryRunSampler,
        KeepFailedRunsProcessor,
        RecordEveryRunSampler,
    )
    from decisiontrace.setup import Telemetry, configure
    from decisiontrace.tracking.instrumentor import DecisionInstrumentor

# Imported on first use, so that `import decisiontrace` (every agent start, every CLI
# command) does not pay for the SDK (its trace module included), the OTLP encoders,
# protobuf and pydantic (the record models: recording does not need them).
_LAZY = {
    "Decision": "decisiontrace.models",
    "DecisionEvaluation": "decisiontrace.models",
    "Option": "decisiontrace.models",
    "Outcome": "decisiontrace.models",
    "Problem": "decisiontrace.models",
    "Run": "decisiontrace.models",
    "RunMetrics": "decisiontrace.models",
    "RunSummary": "decisiontrace.models",
    "RunRecordProcessor": "decisiontrace.pipeline.processor",
    "integrations": "decisiontrace.integrations",
    "Judgement": "decisiontrace.evaluation",
    "evaluate": "decisiontrace.evaluation",
    "judgements_of": "decisiontrace.evaluation",
    "DecisionInstrumentor": "decisiontrace.tracking.instrumentor",
    "KeepEveryRunSampler": "decisiontrace.pipeline.sampling",
    "KeepFailedRunsProcessor": "decisiontrace.pipeline.sampling",
    "RecordEveryRunSampler": "decisiontrace.pipeline.sampling",
    "Telemetry": "decisiontrace.setup",
    "configure": "decisiontrace.setup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'decisiontrace' has no attribute {name!r}")
    if name == "integrations":
        value: Any = importlib.import_module(module)
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ContextThreadPoolExecutor",
    "Decision",
    "DecisionEvaluation",
    "DecisionInstrumentor",
    "DecisionTracker",
    "DecisionType",
    "Judgement",
    "KeepEveryRunSampler",
    "KeepFailedRunsProcessor",
    "Option",
    "Outcome",
    "Problem",
    "RebuildResult",
    "RecordEveryRunSampler",
    "Run",
    "RunContextFilter",
    "RunMetrics",
    "RunRecordProcessor",
    "RunStatus",
    "RunStore",
    "RunSummary",
    "Telemetry",
    "__version__",
    "agent",
    "bind_context",
    "choose",
    "configure",
    "configure_redaction",
    "decision",
    "default_tracker",
    "evaluate",
    "install_log_context",
    "integrations",
    "judgements_of",
    "node",
    "open_store",
    "rebuild",
    "set_default_tracker",
]
