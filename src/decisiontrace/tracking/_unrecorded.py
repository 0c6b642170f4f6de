"""Runs nobody records (no SDK installed, or sampled out): the live essentials only.

Such a run takes the same calls as any other and keeps only what its live view shows:
each decision's id, intent, node, chosen option and success. This module is the one
home of that behaviour; the span emitter hands it the calls of a non-recording run.
"""

from __future__ import annotations

import time
from typing import Any

from decisiontrace.spanmodel import _codec, _packed
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._jsonsafe import safe_str
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _normalize
from decisiontrace.tracking._live import LiveDecision, LiveRun

_time_ns = time.time_ns
_get_node = ctx.current_node.get

# The outcomes of decisions in runs nobody records, shared: an outcome is never changed
# once set (records copy it), and one dict per call costs more than the rest of it.
_SUCCESS: _codec.Attributes = {sc.OUTCOME_SUCCESS: True, sc.OUTCOME_TOKENS: 0}
_FAILURE: _codec.Attributes = {sc.OUTCOME_SUCCESS: False, sc.OUTCOME_TOKENS: 0}
#: The keys of a packed decision of such a run (``_live_decision.pack``'s form).
_LAYOUT: _packed.Layout = (
    sc.DECISION_INTENT, sc.NODE_ID, sc.DECISION_CHOSEN_ID, sc.DECISION_ID, sc.OUTCOME_SUCCESS,
    sc.OUTCOME_TOKENS,
)  # fmt: skip


def decision(
    live: LiveRun, intent: str, chosen: Any, node_id: Any, start_ns: int
) -> LiveDecision | None:
    """A decision in a run nobody records: an id and the live essentials only.

    Its "span" is the run's own non-recording span, so code that makes it current
    (decorators) keeps propagating the run's trace context.
    """
    node = node_id if type(node_id) is str else safe_str(node_id)
    attributes: _codec.Attributes = {
        sc.DECISION_INTENT: intent,
        sc.NODE_ID: node,
        sc.DECISION_CHOSEN_ID: chosen if type(chosen) is str else safe_str(chosen),
    }
    with live.lock:
        if live.end_ns is not None:
            return None
        decision_id = live.next_decision_id()
        attributes[sc.DECISION_ID] = decision_id
        recorded = LiveDecision(decision_id, live.span, attributes, start_ns)
        live.decisions[decision_id] = recorded
        if node not in live.nodes:
            live.nodes.append(node)
    return recorded


def outcome(
    live: LiveRun,
    decision: LiveDecision,
    success: bool,
    tokens_used: Any,
    chosen: Any,
    end_ns: int,
) -> None:
    """The live essentials of an outcome in a run nobody records: success, tokens
    and the chosen option (given now, or declared earlier with ``choose()``)."""
    if chosen is not None and type(chosen) is not str:
        chosen = _normalize.text(chosen, "record_outcome(): chosen")
    if type(tokens_used) is int and tokens_used:
        kept = {sc.OUTCOME_SUCCESS: success, sc.OUTCOME_TOKENS: tokens_used}
    else:
        kept = _SUCCESS if success else _FAILURE
    with live.lock:
        if decision.outcome is not None or decision.end_ns is not None:
            return  # the run ended first and closed the decision
        attributes = decision.attributes
        if chosen is not None:
            attributes[sc.DECISION_CHOSEN_ID] = chosen
        decision.outcome = kept
        decision.end_ns = end_ns
        if live.decision_count > _packed.PACK_AFTER:
            # Packed as the recorded path packs (LiveRun.keep_ended), built directly.
            live.keep_packed(
                decision.decision_id,
                (
                    attributes[sc.DECISION_INTENT],
                    attributes[sc.NODE_ID],
                    attributes[sc.DECISION_CHOSEN_ID],
                    decision.decision_id,
                    success,
                    kept[sc.OUTCOME_TOKENS],
                    _LAYOUT,
                    decision.start_ns,
                    end_ns,
                    0,  # no span id: no decision span exists
                ),
            )


# --- decorated calls -------------------------------------------------------------------
# ``@decision`` in a run nobody records comes here directly: the arguments it would
# hand the span emitter are not kept, and the calls in between were most of its cost.


def open_call(live: LiveRun, intent: str, node_id: str | None) -> LiveDecision | None:
    """A decorated call's decision; ``node_id`` None: the current ``@node``, else the
    run's current node (the rule of ``SpanEmitter.open_decision``)."""
    if node_id is None:
        node_id = _get_node() or live.current_node
    return decision(live, intent, "", node_id, _time_ns())


def close_call(live: LiveRun, decision: LiveDecision, chosen: str | None) -> None:
    """A decorated call's successful outcome: ``chosen``, else the option declared with
    ``choose()`` while the function ran (as ``SpanEmitter.record_outcome`` takes it)."""
    pending = decision.pending_choice
    if chosen is None and pending is not None:
        chosen = pending[0]
    outcome(live, decision, True, 0, chosen, _time_ns())
