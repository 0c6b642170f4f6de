"""Public import path: the code lives in :mod:`decisiontrace.tracking.propagation`."""

from decisiontrace.tracking.propagation import (
    attached as attached,
)
from decisiontrace.tracking.propagation import (
    extract as extract,
)
from decisiontrace.tracking.propagation import (
    inject as inject,
)
