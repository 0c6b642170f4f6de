"""The record models: a Run with its decisions, outcomes and problems.

Field for field the records of the original tracker (``tests/reference/run.schema.json``),
so records written by either can be read by both. Computed fields (``chosen_option``,
``was_successful``, ``was_good_decision``, ``duration_ms``, ``success_rate``) are written
when a record is serialized and dropped again when one is loaded, so a loaded record
equals the one that was saved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from decisiontrace.spanmodel import _ids, _records
from decisiontrace.spanmodel._kinds import DecisionType, RunStatus


def _without(computed: tuple[str, ...], data: Any) -> Any:
    """Drop computed fields from input so they never come back as extra fields."""
    if isinstance(data, dict) and any(name in data for name in computed):
        return {key: value for key, value in data.items() if key not in computed}
    return data


class Option(BaseModel):
    """One possible choice the agent could make."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: str
    description: str
    action_type: str
    action_params: dict[str, Any] = Field(default_factory=dict)
    pros: list[str] = Field(default_factory=list)
    cons: list[str] = Field(default_factory=list)
    confidence: float = 0.5


class Outcome(BaseModel):
    """What actually happened when a decision was executed."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    success: bool
    result: Any = None
    error: str | None = None
    state_changes: dict[str, Any] = Field(default_factory=dict)
    tokens_used: int = 0
    latency_ms: int = 0
    summary: str = ""
    timestamp: datetime = Field(default_factory=datetime.now)


class DecisionEvaluation(BaseModel):
    """Post-hoc evaluation of whether a decision was good."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    goal_aligned: bool = True
    alignment_score: float = Field(default=1.0, ge=0.0, le=1.0)
    better_option_existed: bool = False
    better_option_id: str | None = None
    why_better: str | None = None
    outcome_quality: float = Field(default=1.0, ge=0.0, le=1.0)
    contributed_to_success: bool | None = None
    explanation: str = ""


class Decision(BaseModel):
    """One choice the agent made: its options, the one chosen, why, and what happened."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: str
    timestamp: datetime = Field(default_factory=datetime.now)
    node_id: str
    intent: str = Field(description="What the agent was trying to do")
    decision_type: DecisionType = DecisionType.CUSTOM
    options: list[Option] = Field(default_factory=list)
    chosen_option_id: str = ""
    reasoning: str = ""
    active_constraints: list[str] = Field(default_factory=list)
    input_context: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome | None = None
    evaluation: DecisionEvaluation | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        return _without(_records.DECISION_COMPUTED, data)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def chosen_option(self) -> Option | None:
        """Get the option that was chosen."""
        option: Option | None = _records.chosen_option(self.options, self.chosen_option_id)
        return option

    @computed_field  # type: ignore[prop-decorator]
    @property
    def was_successful(self) -> bool:
        """Did this decision's execution succeed?"""
        return self.outcome is not None and self.outcome.success

    @computed_field  # type: ignore[prop-decorator]
    @property
    def was_good_decision(self) -> bool:
        """Was this evaluated as a good decision?"""
        return _records.was_good_decision(self.was_successful, self.evaluation)

    def summary_for_builder(self) -> str:
        """One line: ``✓ [node] intent → chosen action``."""
        return _records.decision_line(self.model_dump(mode="json"))


class Problem(BaseModel):
    """A problem that occurred during the run."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: str
    severity: str = Field(description="critical, warning, or minor")
    description: str
    root_cause: str | None = None
    decision_id: str | None = None
    timestamp: datetime = Field(default_factory=datetime.now)
    suggested_fix: str | None = None


class RunMetrics(BaseModel):
    """Quantitative metrics about a run."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    total_decisions: int = 0
    successful_decisions: int = 0
    failed_decisions: int = 0
    total_tokens: int = 0
    total_latency_ms: int = 0
    nodes_executed: list[str] = Field(default_factory=list)
    edges_traversed: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        return _without(_records.METRICS_COMPUTED, data)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def success_rate(self) -> float:
        """Share of decisions that succeeded."""
        return _records.success_rate(self.total_decisions, self.successful_decisions)


class Run(BaseModel):
    """A complete execution of an agent graph: its decisions, problems and metrics."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: str
    goal_id: str
    started_at: datetime = Field(default_factory=datetime.now)
    status: RunStatus = RunStatus.RUNNING
    completed_at: datetime | None = None
    decisions: list[Decision] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)
    metrics: RunMetrics = Field(default_factory=RunMetrics)
    narrative: str = ""
    goal_description: str = ""
    input_data: dict[str, Any] = Field(default_factory=dict)
    output_data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        return _without(_records.RUN_COMPUTED, data)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_ms(self) -> int:
        """Duration of the run in milliseconds."""
        return _records.duration_ms(self.started_at, self.completed_at)

    def add_decision(self, decision: Decision) -> None:
        """Append a decision and count it (and its node, first time seen)."""
        self.decisions.append(decision)
        self.metrics.total_decisions += 1
        if decision.node_id not in self.metrics.nodes_executed:
            self.metrics.nodes_executed.append(decision.node_id)

    def record_outcome(self, decision_id: str, outcome: Outcome) -> None:
        """Attach an outcome to a decision and add it to the metrics."""
        for decision in self.decisions:
            if decision.id == decision_id:
                decision.outcome = outcome
                if outcome.success:
                    self.metrics.successful_decisions += 1
                else:
                    self.metrics.failed_decisions += 1
                self.metrics.total_tokens += outcome.tokens_used
                self.metrics.total_latency_ms += outcome.latency_ms
                break

    def add_problem(
        self,
        severity: str,
        description: str,
        decision_id: str | None = None,
        root_cause: str | None = None,
        suggested_fix: str | None = None,
    ) -> str:
        """Append a problem; returns its id (``prob_N``)."""
        problem_id = _ids.problem_id(len(self.problems))
        self.problems.append(
            Problem(
                id=problem_id,
                severity=severity,
                description=description,
                decision_id=decision_id,
                root_cause=root_cause,
                suggested_fix=suggested_fix,
            )
        )
        return problem_id

    def complete(self, status: RunStatus, narrative: str = "") -> None:
        """Mark the run complete now, with the given or a generated narrative."""
        self.status = status
        self.completed_at = datetime.now()
        self.narrative = narrative or self._generate_narrative()

    def _generate_narrative(self) -> str:
        return _records.narrative(
            self.status.value,
            self.metrics.total_decisions,
            self.metrics.successful_decisions,
            self.metrics.failed_decisions,
            [(p.severity, p.description) for p in self.problems],
            [d.intent for d in self.decisions if not d.was_successful],
        )


class RunSummary(BaseModel):
    """A condensed view of a run, for scanning many runs quickly."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    run_id: str
    goal_id: str
    status: RunStatus
    duration_ms: int
    decision_count: int
    success_rate: float
    problem_count: int
    narrative: str
    key_decisions: list[str] = Field(default_factory=list)
    critical_problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    successes: list[str] = Field(default_factory=list)

    @classmethod
    def from_run(cls, run: Run) -> RunSummary:
        """Create a summary from a full run."""
        return cls.model_validate(_records.summary_from_record(run.model_dump(mode="json")))


__all__ = [
    "Decision",
    "DecisionEvaluation",
    "DecisionType",
    "Option",
    "Outcome",
    "Problem",
    "Run",
    "RunMetrics",
    "RunStatus",
    "RunSummary",
]
