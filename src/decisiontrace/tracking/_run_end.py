"""What a run's end says: its status and the attributes its root span ends with.

Worked out from the live view of the run when it ends (:meth:`SpanEmitter.end_run
<decisiontrace.tracking._emitter.SpanEmitter.end_run>`): the decisions still in the
live view and those packed once they ended, its problems and nodes. The narrative is
the agent's, redacted, or written from the totals (:mod:`decisiontrace.spanmodel.
_records`); a paused run's says it can be resumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from decisiontrace.spanmodel import _codec, _packed, _records
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._kinds import RunStatus
from decisiontrace.spanmodel._redact import redact_text
from decisiontrace.tracking import _normalize
from decisiontrace.tracking._live import LiveDecision, packed_attributes

_RUN_STATUSES = frozenset(s.value for s in RunStatus)
_COMPLETED_TEXT = "Run completed successfully."


def status(success: Any, given: RunStatus | str | None) -> str:
    """The run's status: ``given`` if it is one (else ``failed``, with a warning), or
    completed/failed by ``success``."""
    if given is None:
        return _codec.ended_status(bool(success))
    value = _normalize.text(given, "end_run(): status")
    if value not in _RUN_STATUSES:
        _normalize.warn(f"end_run(): unknown status {value!r}; recorded as 'failed'")
        return "failed"
    return value


def end_attributes(
    status_value: str,
    decisions: Sequence[LiveDecision],
    ended: Any,
    problems: Sequence[tuple[str, str]],
    nodes: list[str],
    narrative: Any,
    output_data: Any,
    *,
    llm_tokens: int,
    end_reason: str | None,
    paused: bool,
) -> _codec.Attributes:
    """The root span's end attributes.

    Args:
        decisions: the live view's decisions; ``ended``: the packed ones (or None).
        problems: ``(severity, description)`` of each problem reported.
        llm_tokens: LLM tokens that counted for the run but none of its decisions.
    """
    totals = _records.Totals()
    intents_failed = []
    kept: Iterable[tuple[_codec.Attributes | None, _codec.Attributes]] = (
        (d.outcome, d.attributes) for d in decisions
    )
    if ended is not None:  # packed: ended with their outcome
        kept = itertools.chain(
            kept, ((a, a) for a in map(packed_attributes, _packed.unpacked(ended)))
        )
    for outcome, attributes in kept:
        if outcome is None:
            success = None
            totals.add(None)
        else:
            success = bool(outcome[sc.OUTCOME_SUCCESS])
            totals.add(success, outcome.get(sc.OUTCOME_TOKENS, 0))
        if _records.named_as_failed(success, bool(attributes.get(sc.DECISION_PAUSED))):
            intents_failed.append(str(attributes[sc.DECISION_INTENT]))
    text = redact_text(_normalize.text(narrative, "end_run(): narrative")) or _records.narrative(
        status_value, totals.decisions, totals.successful, totals.failed, list(problems),
        intents_failed,
    )  # fmt: skip
    if paused and text.startswith(_COMPLETED_TEXT):
        text = "Run paused, resumable." + text[len(_COMPLETED_TEXT) :]
    return _codec.run_end_attributes(
        status=status_value,
        narrative=text,
        totals=totals,
        problem_count=len(problems),
        nodes=nodes,
        llm_tokens=llm_tokens,
        output_data=output_data,
        end_reason=end_reason,
        paused=paused,
    )


__all__ = ["end_attributes", "status"]
