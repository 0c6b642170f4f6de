"""Public import path: the code lives in :mod:`decisiontrace.export.rebuild`."""

from decisiontrace.export.rebuild import (
    RebuildResult as RebuildResult,
)
from decisiontrace.export.rebuild import (
    rebuild as rebuild,
)
