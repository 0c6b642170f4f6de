"""Public import path: the code lives in :mod:`decisiontrace.pipeline.metrics`."""

from decisiontrace.pipeline.metrics import (
    DECISION_DURATION as DECISION_DURATION,
)
from decisiontrace.pipeline.metrics import (
    DECISION_TOKENS as DECISION_TOKENS,
)
from decisiontrace.pipeline.metrics import (
    DECISIONS as DECISIONS,
)
from decisiontrace.pipeline.metrics import (
    GEN_AI_INVOKE_AGENT_DURATION as GEN_AI_INVOKE_AGENT_DURATION,
)
from decisiontrace.pipeline.metrics import (
    METRIC_NAMES as METRIC_NAMES,
)
from decisiontrace.pipeline.metrics import (
    OUTCOMES as OUTCOMES,
)
from decisiontrace.pipeline.metrics import (
    RUN_DURATION as RUN_DURATION,
)
from decisiontrace.pipeline.metrics import (
    RUNS as RUNS,
)
from decisiontrace.pipeline.metrics import (
    RunMetrics as RunMetrics,
)
