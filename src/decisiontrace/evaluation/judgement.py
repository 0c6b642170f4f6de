"""The judgement model: what one evaluator concluded about one decision.

Stored in the decision's ``evaluations`` extra field (one per evaluator, the latest of
each), and sent as a ``gen_ai.evaluation.result`` event. Scores are checked against the
original's ``[0, 1]`` ranges.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from decisiontrace.models import Decision, DecisionEvaluation
from decisiontrace.spanmodel import _redact
from decisiontrace.spanmodel._judgements import EVALUATIONS_FIELD


class Judgement(BaseModel):
    """One evaluator's judgement of one decision.

    Attributes:
        evaluator: the evaluator's name (``gen_ai.evaluation.name``).
        score: a score from 0 (bad) to 1 (good), if the evaluator gives one.
        label: a short verdict such as ``"good"`` or ``"better_option_existed"``.
        explanation: why, in words.
        evaluation: the full :class:`DecisionEvaluation`, if the evaluator made one.
        evaluated_at: when (local time, as the records keep time).
    """

    model_config = ConfigDict(extra="allow")

    evaluator: str = Field(min_length=1)
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    label: str | None = None
    explanation: str | None = None
    evaluation: DecisionEvaluation | None = None
    evaluated_at: datetime = Field(default_factory=datetime.now)


def build(
    evaluator: Any,
    evaluation: Any,
    score: Any,
    label: Any,
    explanation: Any,
    evaluated_at: datetime | None = None,
) -> Judgement:
    """A checked judgement; ValueError naming the field that is wrong.

    With a full ``evaluation`` and no ``score`` or ``explanation``, its
    ``outcome_quality`` and ``explanation`` stand in for them.
    """
    if not isinstance(evaluator, str) or not evaluator.strip():
        raise ValueError(f"evaluator must be a non-empty name, got {evaluator!r}")
    if evaluation is not None and not isinstance(evaluation, DecisionEvaluation | dict):
        raise ValueError(
            f"evaluation must be a DecisionEvaluation or a dict, got {type(evaluation).__name__}"
        )
    fields: dict[str, Any] = {
        "evaluator": evaluator,
        "score": score,
        "label": label,
        "explanation": explanation,
        "evaluation": evaluation,
    }
    if evaluated_at is not None:
        fields["evaluated_at"] = evaluated_at
    try:
        judgement = Judgement.model_validate(fields)
    except ValidationError as error:
        raise ValueError(_describe(error)) from None
    # Evaluators quote the agent's data (an LLM judge most of all): the same redaction
    # rules as for recorded decisions apply before anything is stored or sent.
    for name in ("label", "explanation"):
        value = getattr(judgement, name)
        if value is not None:
            setattr(judgement, name, _redact.redact_text(value))
    full = judgement.evaluation
    if full is not None:
        full.explanation = _redact.redact_text(full.explanation)
        if full.why_better is not None:
            full.why_better = _redact.redact_text(full.why_better)
        if judgement.score is None:
            judgement.score = full.outcome_quality
        if judgement.explanation is None and full.explanation:
            judgement.explanation = full.explanation
    if judgement.score is None and judgement.label is None and full is None:
        raise ValueError("a judgement needs an evaluation, a score or a label; none was given")
    return judgement


def _describe(error: ValidationError) -> str:
    """The first problem, with the field named: ``score: ... (got 1.5)``."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "judgement"
    return f"{field}: {first['msg']} (got {first.get('input')!r})"


def judgements_of(decision: Decision) -> list[Judgement]:
    """The judgements stored with a decision (its ``evaluations`` extra field)."""
    extra = decision.model_extra or {}
    stored = extra.get(EVALUATIONS_FIELD) or []
    result: list[Judgement] = []
    for item in stored if isinstance(stored, list) else []:
        try:
            result.append(Judgement.model_validate(item))
        except ValidationError:
            continue  # written by something else: not ours to judge
    return result


def stored_form(judgement: Judgement) -> dict[str, Any]:
    """The JSON-ready dict a store keeps."""
    return judgement.model_dump(mode="json")


__all__ = ["Judgement", "build", "judgements_of", "stored_form"]
