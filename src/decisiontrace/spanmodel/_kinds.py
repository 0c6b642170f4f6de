"""The two enumerations recording needs: a decision's type and a run's status.

They live apart from the record models (:mod:`decisiontrace.models`, which re-exports
them) so that the recording path, which writes their values into span attributes, does
not import pydantic: ``import decisiontrace`` and an agent's start stay light, and the
models load when a record is first read or built.
"""

from __future__ import annotations

from enum import Enum


class DecisionType(str, Enum):
    """Types of decisions an agent can make."""

    TOOL_SELECTION = "tool_selection"
    PARAMETER_CHOICE = "parameter_choice"
    PATH_CHOICE = "path_choice"
    OUTPUT_FORMAT = "output_format"
    RETRY_STRATEGY = "retry_strategy"
    DELEGATION = "delegation"
    TERMINATION = "termination"
    CUSTOM = "custom"


class RunStatus(str, Enum):
    """Status of a run."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STUCK = "stuck"
    CANCELLED = "cancelled"


# Their public home, as before: documentation, pickles and reprs name the models module.
DecisionType.__module__ = "decisiontrace.models"
RunStatus.__module__ = "decisiontrace.models"
