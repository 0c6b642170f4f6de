"""``evaluate()``: record a judgement of a stored decision, and send it as an event.

The judgement is merged into the stored run (the store's ``update_evaluations``, one
transaction) and emitted as a ``gen_ai.evaluation.result`` event parented to the
decision's span. Never raises: bad input or an unknown run or decision logs one warning
and records nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from opentelemetry import _logs, trace

from decisiontrace._internal.errors import internal_error, warn_input
from decisiontrace.evaluation import telemetry
from decisiontrace.evaluation.judgement import Judgement, build, stored_form
from decisiontrace.models import DecisionEvaluation
from decisiontrace.spanmodel._jsonsafe import safe_repr
from decisiontrace.stores import RunStore, open_store

logger = logging.getLogger("decisiontrace")

#: Seconds :func:`evaluate` waits, by default, for a run that has just ended to be stored.
DEFAULT_WAIT = 5.0
_POLL_SECONDS = 0.05


def _warn(message: str) -> None:
    """Bad input to evaluate(): one warning per kind and calling line (repeats at DEBUG)."""
    warn_input(f"evaluate(): {message}; nothing recorded")


def _resolve_store(store: RunStore | str | os.PathLike[str] | None) -> tuple[RunStore, bool]:
    """The store to write to, and whether it was opened here (then closed after)."""
    if isinstance(store, RunStore):
        return store, False
    if store is None:
        from decisiontrace import setup  # the active configure(): its store, if any

        active = setup.active_telemetry()
        if active is not None:
            return active.store, False
    return open_store(store), True


def _flush(tracer_provider: Any, timeout: float) -> None:
    """Ask the provider's processors to store what has ended (bounded)."""
    force_flush = getattr(tracer_provider, "force_flush", None)
    if callable(force_flush) and timeout > 0:
        force_flush(int(timeout * 1000))


def load_when_stored(
    store: RunStore,
    run_id: str,
    *,
    wait: float,
    tracer_provider: Any = None,
    poll: bool = False,
) -> dict[str, Any] | None:
    """The stored record of ``run_id``; if missing, flush the provider and look again.

    With ``poll``, keep looking until ``wait`` seconds have passed (a run known to
    have ended, still waiting in the processor for late spans).
    """
    record = store.load_record(run_id)
    if record is not None or wait <= 0:
        return record
    deadline = time.monotonic() + wait
    _flush(tracer_provider or trace.get_tracer_provider(), wait)
    record = store.load_record(run_id)
    while record is None and poll and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        record = store.load_record(run_id)
    return record


def record_judgement(
    store: RunStore,
    record: dict[str, Any],
    decision_id: str,
    judgement: Judgement,
    logger_provider: _logs.LoggerProvider | None = None,
) -> bool:
    """Store a judgement of a decision of ``record`` and emit its event; False if the
    decision is not in the stored run (nothing recorded)."""
    run_id = str(record.get("id"))
    unknown = store.update_evaluations(run_id, [(decision_id, stored_form(judgement))])
    if unknown is None or decision_id in unknown:
        return False
    decision = next(
        (
            d
            for d in record.get("decisions") or []
            if isinstance(d, dict) and d.get("id") == decision_id
        ),
        {"id": decision_id},
    )
    try:
        telemetry.emit(record, decision, judgement, logger_provider)
    except Exception as error:  # the judgement is stored; a bug here must not undo that
        internal_error("emitting an evaluation event", error)
    return True


def evaluate(
    run_id: str,
    decision_id: str,
    *,
    evaluator: str,
    evaluation: DecisionEvaluation | dict[str, Any] | None = None,
    score: float | None = None,
    label: str | None = None,
    explanation: str | None = None,
    store: RunStore | str | os.PathLike[str] | None = None,
    wait: float = DEFAULT_WAIT,
    logger_provider: _logs.LoggerProvider | None = None,
    tracer_provider: Any = None,
) -> Judgement | None:
    """Record a judgement of a stored decision under the evaluator's name.

    Give either a full :class:`DecisionEvaluation` (``evaluation``) or a ``score`` (0 to
    1), ``label`` and ``explanation`` (or both). The judgement replaces this evaluator's
    earlier one of the decision and is kept beside other evaluators' (the decision's
    ``evaluations`` extra field); a full evaluation also becomes the decision's
    ``evaluation``. It is also emitted as a ``gen_ai.evaluation.result`` event through
    the OpenTelemetry Logs API, parented to the decision's span.

    A run that has just ended may still be on its way to the store: the tracer
    provider is flushed and the store read again, for at most ``wait`` seconds. A run
    still open cannot be evaluated.

    Never raises: an unknown run or decision, or a score outside ``[0, 1]``, logs one
    warning (naming the field) and records nothing.

    Args:
        run_id: the run.
        decision_id: the decision (``dec_N``).
        evaluator: the evaluator's name (``gen_ai.evaluation.name``).
        evaluation: a full evaluation, as the original's ``DecisionEvaluation``.
        score: 0 (bad) to 1 (good); default the evaluation's ``outcome_quality``.
        label: a short verdict.
        explanation: why; default the evaluation's ``explanation``.
        store: the store or its URL; default the store of the active
            :func:`~decisiontrace.configure`, else ``$DECISIONTRACE_STORE`` / the default.
        wait: seconds to wait for a run that has just ended to be stored.
        logger_provider: where the event goes; default the global LoggerProvider.
        tracer_provider: flushed when the run is not stored yet; default the global one.

    Returns:
        The recorded :class:`Judgement`, or None when nothing was recorded.
    """
    try:
        return record_evaluation(
            run_id, decision_id, evaluator, evaluation, score, label, explanation, store,
            wait, logger_provider, tracer_provider, poll=False,
        )  # fmt: skip
    except Exception as error:  # the agent's call: never raised into it
        internal_error("evaluate", error)
        return None


def record_evaluation(  # the checks and work of evaluate(), for it and the tracker
    run_id: Any,
    decision_id: Any,
    evaluator: Any,
    evaluation: Any,
    score: Any,
    label: Any,
    explanation: Any,
    store: Any,
    wait: Any,
    logger_provider: Any,
    tracer_provider: Any,
    *,
    poll: bool,
) -> Judgement | None:
    for name, value in (("run_id", run_id), ("decision_id", decision_id)):
        if not isinstance(value, str) or not value:
            _warn(f"{name} must be a non-empty str, got {safe_repr(value)}")
            return None
    try:
        judgement = build(evaluator, evaluation, score, label, explanation)
    except ValueError as error:
        _warn(str(error))
        return None
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        wait = DEFAULT_WAIT
    target, opened = _resolve_store(store)
    try:
        record = load_when_stored(
            target, run_id, wait=float(wait), tracer_provider=tracer_provider, poll=poll
        )
        if record is None:
            _warn(
                f"no run {run_id!r} in {target.url} (a run still open cannot be evaluated "
                "until it has ended and been stored)"
            )
            return None
        if not record_judgement(target, record, decision_id, judgement, logger_provider):
            _warn(f"run {run_id!r} has no decision {decision_id!r}")
            return None
        return judgement
    finally:
        if opened:
            target.close()


__all__ = [
    "DEFAULT_WAIT",
    "evaluate",
    "load_when_stored",
    "record_evaluation",
    "record_judgement",
]
