"""The built-in evaluators, and finding an evaluator by name.

An evaluator is a function ``(run, decision) -> judgement | None`` taking a stored
:class:`~decisiontrace.Run` and one of its :class:`~decisiontrace.Decision` objects.
It may return a :class:`~decisiontrace.evaluation.Judgement`, a
:class:`~decisiontrace.DecisionEvaluation`, a dict with ``score``, ``label``,
``explanation`` and/or ``evaluation``, or None to leave the decision unjudged.

Built in, with no network: ``outcome`` (the decision's success, the problems tied to it
or reported after it, and how the run ended) and ``better-option`` (the chosen option
failed and a later decision of the same run at the same node chose another of its
options, which succeeded). An LLM-as-judge evaluator is a user function (see
``docs/evaluations.md``), named as ``module:function``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from decisiontrace.models import Decision, DecisionEvaluation, Run, RunStatus

Evaluator = Callable[[Run, Decision], Any]

# Penalties on outcome quality for problems tied to the decision, by severity.
_OWN_PROBLEM_PENALTY = {"critical": 0.5, "warning": 0.25}
_OTHER_OWN_PENALTY = 0.1
# Problems reported after the decision and tied to no decision: a smaller share each.
_LATER_PROBLEM_PENALTY = 0.1
_LATER_PROBLEM_CAP = 0.3


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def outcome(run: Run, decision: Decision) -> dict[str, Any] | None:
    """Judge a decision by its outcome, the problems after it, and the run's result.

    Quality is 1 for a success (0 for a failure), less 0.5 per critical, 0.25 per
    warning and 0.1 per other problem tied to the decision, and 0.1 per problem reported
    after it and tied to no decision (at most 0.3), never below 0. The decision is goal
    aligned when it succeeded in a run that completed, or succeeded without a problem
    tied to it; alignment is 1 when both the decision and the run succeeded, 0.5 when
    one did, else 0. It contributed to success when it and the run both succeeded, and
    not when both failed. Decisions without an outcome are not judged.

    Score: the quality; label ``good`` (quality at least 0.8 and aligned), ``poor``
    (quality under 0.5) or ``mixed``.
    """
    if decision.outcome is None:
        return None
    succeeded = decision.outcome.success
    run_completed = run.status == RunStatus.COMPLETED
    run_failed = run.status == RunStatus.FAILED
    own = [p for p in run.problems if p.decision_id == decision.id]
    later = [p for p in run.problems if p.decision_id is None and p.timestamp >= decision.timestamp]
    quality = 1.0 if succeeded else 0.0
    quality -= sum(_OWN_PROBLEM_PENALTY.get(p.severity, _OTHER_OWN_PENALTY) for p in own)
    quality -= min(_LATER_PROBLEM_PENALTY * len(later), _LATER_PROBLEM_CAP)
    quality = round(max(quality, 0.0), 4)
    alignment = (0.5 if succeeded else 0.0) + (0.5 if run_completed else 0.0)
    contributed: bool | None = None
    if succeeded and run_completed:
        contributed = True
    elif not succeeded and run_failed:
        contributed = False
    words = ["succeeded" if succeeded else "failed"]
    if decision.outcome.error and not succeeded:
        words[0] += f" ({decision.outcome.error})"
    if own:
        words.append(f"{_plural(len(own), 'problem')} tied to it")
    if later:
        words.append(f"{_plural(len(later), 'problem')} reported after it")
    words.append(f"the run {run.status.value}")
    aligned = succeeded and (run_completed or not own)
    label = "good" if quality >= 0.8 and aligned else "poor" if quality < 0.5 else "mixed"
    return {
        "label": label,
        "evaluation": DecisionEvaluation(
            goal_aligned=aligned,
            alignment_score=alignment,
            better_option_existed=False,
            outcome_quality=quality,
            contributed_to_success=contributed,
            explanation="; ".join(words),
        ),
    }


def better_option(run: Run, decision: Decision) -> dict[str, Any] | None:
    """Whether a better option existed, by what the same run did next at the same node.

    A better option existed when the chosen option failed and a later decision of the
    same run, at the same node, chose another of this decision's options and succeeded
    (a fallback, a retry with another tool). The first such decision names it. A chosen
    option that succeeded, or a failure no later decision did better on, is judged too
    (no better option seen). Decisions without an outcome are not judged.

    Score: 0 when a better option existed, 1 otherwise; labels
    ``better_option_existed``, ``no_better_option_seen``, ``chosen_option_succeeded``.
    """
    if decision.outcome is None:
        return None
    succeeded = decision.outcome.success
    if succeeded:
        return {
            "score": 1.0,
            "label": "chosen_option_succeeded",
            "explanation": f"{decision.chosen_option_id!r} succeeded",
            "evaluation": DecisionEvaluation(
                outcome_quality=1.0, explanation=f"{decision.chosen_option_id!r} succeeded"
            ),
        }
    option_ids = {option.id for option in decision.options}
    position = next(i for i, d in enumerate(run.decisions) if d is decision)
    for later in run.decisions[position + 1 :]:
        if (
            later.node_id == decision.node_id
            and later.chosen_option_id != decision.chosen_option_id
            and later.chosen_option_id in option_ids
            and later.outcome is not None
            and later.outcome.success
        ):
            why = (
                f"{later.chosen_option_id!r} succeeded when {later.id} chose it later in the "
                f"run at node {decision.node_id!r}, where {decision.chosen_option_id!r} failed"
                + (f" ({decision.outcome.error})" if decision.outcome.error else "")
            )
            return {
                "score": 0.0,
                "label": "better_option_existed",
                "explanation": why,
                "evaluation": DecisionEvaluation(
                    goal_aligned=True,
                    alignment_score=0.5,
                    better_option_existed=True,
                    better_option_id=later.chosen_option_id,
                    why_better=why,
                    outcome_quality=0.0,
                    contributed_to_success=False,
                    explanation=why,
                ),
            }
    explanation = (
        f"{decision.chosen_option_id!r} failed and no later decision at node "
        f"{decision.node_id!r} succeeded with another of its options"
    )
    return {
        "score": 1.0,
        "label": "no_better_option_seen",
        "explanation": explanation,
        "evaluation": DecisionEvaluation(
            outcome_quality=0.0, contributed_to_success=False, explanation=explanation
        ),
    }


#: The built-in evaluators by name.
BUILT_IN: dict[str, Evaluator] = {"outcome": outcome, "better-option": better_option}


def load_evaluator(spec: str) -> tuple[str, Evaluator]:
    """The evaluator a name or ``module:function`` spec names, with its judgement name.

    A built-in name gives that evaluator. ``module:function`` imports ``module`` and
    takes ``function`` (dotted attributes allowed); its judgements are recorded under
    the function's ``evaluator_name`` attribute if it has one, else under the spec.

    Raises:
        ValueError: the spec names nothing that can be called, saying why.
    """
    if spec in BUILT_IN:
        return spec, BUILT_IN[spec]
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(
            f"unknown evaluator {spec!r}: use a built-in one ({', '.join(BUILT_IN)}) or "
            "module:function"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} for evaluator {spec!r}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {attribute!r} (evaluator {spec!r})") from None
    if not callable(target):
        raise ValueError(f"evaluator {spec!r} is not callable")
    name = getattr(target, "evaluator_name", None)
    return (name if isinstance(name, str) and name else spec), target


__all__ = ["BUILT_IN", "Evaluator", "better_option", "load_evaluator", "outcome"]
