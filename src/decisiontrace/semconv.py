"""Public import path: the code lives in :mod:`decisiontrace.spanmodel.semconv`."""

from decisiontrace.spanmodel.semconv import *  # noqa: F403
