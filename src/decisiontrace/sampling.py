"""Public import path: the code lives in :mod:`decisiontrace.pipeline.sampling`."""

from decisiontrace.pipeline.sampling import (
    EXPORTED_STATUSES as EXPORTED_STATUSES,
)
from decisiontrace.pipeline.sampling import (
    KeepEveryRunSampler as KeepEveryRunSampler,
)
from decisiontrace.pipeline.sampling import (
    KeepFailedRunsProcessor as KeepFailedRunsProcessor,
)
from decisiontrace.pipeline.sampling import (
    RecordEveryRunSampler as RecordEveryRunSampler,
)
