"""The span model, decoding: spans back to records.

Decoding builds JSON-ready record dicts (the stored form) from any span source: the
tracker's live view, ended SDK spans in the processor, and spans read back from OTLP
JSON. All three use the functions below, which is why a rebuilt run equals the live
one. The way there, records to span attributes, is :mod:`decisiontrace.spanmodel._codec`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from decisiontrace._internal.memo import remember
from decisiontrace.spanmodel import _codec, _ids, _records
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._codec import Record
from decisiontrace.spanmodel._jsonsafe import loads
from decisiontrace.spanmodel._values import EMPTY_OBJECT

logger = logging.getLogger("decisiontrace")


@dataclass(slots=True)
class EventData:
    """A span event in source-neutral form."""

    name: str
    time_ns: int
    attributes: Mapping[str, Any]


@dataclass(slots=True)
class SpanData:
    """An ended (or live) span in source-neutral form: SDK span, live view or OTLP JSON."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    start_ns: int
    end_ns: int | None
    attributes: Mapping[str, Any]
    events: Sequence[EventData] = field(default_factory=tuple)
    error: bool = False
    #: ``service.name`` of the resource that made the span, when the source says.
    service_name: str | None = None


def trace_id_hex(trace_id: int) -> str:
    """A trace id as OTLP and trace viewers write it: 32 lowercase hex digits."""
    return f"{trace_id:032x}"


def span_id_hex(span_id: int) -> str:
    """A span id as OTLP and trace viewers write it: 16 lowercase hex digits."""
    return "%016x" % span_id  # noqa: UP031 (half an f-string's time; once per decision)


def _loads(value: Any, default: Any) -> Any:
    if value is None:
        return default
    if not isinstance(value, str):
        return value
    if value == EMPTY_OBJECT:  # the common empty context / state changes
        return {}
    try:
        # This runs for every structured attribute of every stored decision.
        return loads(value)
    except ValueError:
        return value


def _int(value: Any) -> int:
    try:
        return int(value)
    except Exception:  # expected: a span attribute of someone else's, not a number
        return 0


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def decoded_options(
    attributes: Mapping[str, Any], cache: OptionsCache | None = None
) -> list[dict[str, Any]]:
    """The option dicts a decision span carries (from ``cache`` when it has them)."""
    value = attributes.get(sc.DECISION_OPTIONS)
    if cache is not None and type(value) is str:
        options = cache.get(value)
        if options is None:
            options = cache.keep(value, _options_of(_loads(value, [])))
        return options
    return _options_of(_loads(value, []))


def _options_of(value: Any) -> list[dict[str, Any]]:
    return [o for o in value if isinstance(o, dict)] if isinstance(value, list) else []


class OptionsCache(dict[str, list[dict[str, Any]]]):
    """Decoded option lists by the JSON text of the span attribute that carried them.

    Agents offer the same options again and again (a node's choices), and parsing their
    text is a third of a decision's decode. A writer decoding many runs keeps one of
    these, so decisions whose spans carry the same text get *the same* list: records
    built with it are read-only (the stores and listeners read them). It holds at most
    ``MAX`` lists, of texts up to ``MAX_CHARS`` long (longer ones are decoded each
    time), and is emptied when full. One thread at a time.
    """

    MAX = 64
    MAX_CHARS = 4096

    def keep(self, text: str, options: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Remember ``options`` as the decoding of ``text`` (if short); returns them."""
        if len(text) <= self.MAX_CHARS:
            if len(self) >= self.MAX:
                self.clear()
            self[text] = options
        return options


def decision_record(
    attributes: Mapping[str, Any],
    start_ns: int,
    end_ns: int | None,
    extra_tokens: int = 0,
    *,
    light: bool = False,
    span_id: int | None = None,
    options_cache: OptionsCache | None = None,
) -> Record:
    """The stored Decision dict of one decision span.

    ``span_id``, when known, is kept as the extra field ``span_id`` (16 hex digits), so
    a decision leads to its span in a trace viewer. With ``options_cache``, the options
    (and the chosen option) may be shared with other records: see :class:`OptionsCache`.

    With ``light``, the light form: :func:`light_decision_record` of the record.

    Every attribute may be missing and decodes as the record field's default (see
    ``docs/span-model.md``), so an encoder may leave out what the agent did not give.
    """
    # The writer decodes every decision it stores: absent attributes skip _loads, the
    # options are dicts, and exact ints are taken as they are (same results, less work).
    get = attributes.get
    chosen_id = str(get(sc.DECISION_CHOSEN_ID, ""))
    options = decoded_options(attributes, options_cache)
    chosen = None
    for option in options:
        if option.get("id") == chosen_id:
            chosen = option
            break
    outcome: Record | None = None
    success = get(sc.OUTCOME_SUCCESS)
    if success is not None:
        value = get(sc.OUTCOME_STATE_CHANGES)
        state_changes = {} if value is None or value == EMPTY_OBJECT else _loads(value, {})
        result = get(sc.OUTCOME_RESULT)
        tokens = get(sc.OUTCOME_TOKENS, 0)
        latency = get(sc.OUTCOME_LATENCY_MS, 0)
        outcome = {
            "success": bool(success),
            "result": None if result is None else _loads(result, None),
            "error": _opt_str(get(sc.OUTCOME_ERROR)),
            "state_changes": state_changes if isinstance(state_changes, dict) else {},
            "tokens_used": (tokens if type(tokens) is int else _int(tokens)) + extra_tokens,
            "latency_ms": latency if type(latency) is int else _int(latency),
            "summary": str(get(sc.OUTCOME_SUMMARY, "")),
            "timestamp": _records.ns_to_iso(end_ns if end_ns is not None else start_ns),
        }
    evaluation = get(sc.DECISION_EVALUATION)
    if evaluation is not None:
        evaluation = _loads(evaluation, None)
        if not isinstance(evaluation, dict):
            evaluation = None
    value = get(sc.DECISION_INPUT_CONTEXT)
    input_context = {} if value is None or value == EMPTY_OBJECT else _loads(value, {})
    constraints = get(sc.DECISION_CONSTRAINTS, ())
    was_successful = outcome is not None and outcome["success"]
    record: Record = {
        "id": str(get(sc.DECISION_ID, "")),
        "timestamp": _records.ns_to_iso(start_ns),
        "node_id": str(get(sc.NODE_ID, "unknown")),
        "intent": str(get(sc.DECISION_INTENT, "")),
        "decision_type": str(get(sc.DECISION_TYPE, "custom")),
        "options": options,
        "chosen_option_id": chosen_id,
        "reasoning": str(get(sc.DECISION_REASONING, "")),
        "active_constraints": [] if constraints == () else [str(c) for c in constraints],
        "input_context": input_context if isinstance(input_context, dict) else {},
        "outcome": outcome,
        "evaluation": evaluation,
        "chosen_option": chosen,
        "was_successful": was_successful,
        "was_good_decision": (
            was_successful
            if evaluation is None
            else _records.was_good_decision(was_successful, evaluation)
        ),
    }
    service = get(sc.FRAGMENT_SERVICE)
    if service is not None:  # made in another process than the run's root
        record["service"] = str(service)
    if get(sc.DECISION_PAUSED):
        record["paused"] = True
    if light:
        return light_decision_record(record)
    if span_id:
        record["span_id"] = span_id_hex(span_id)
    return record


#: The outcome fields a light decision record keeps.
_LIGHT_OUTCOME = ("success", "tokens_used", "latency_ms", "summary")
#: The decision fields a light decision record keeps (extras: ``_LIGHT_EXTRAS``).
_LIGHT_DECISION = (
    "node_id", "intent", "decision_type", "chosen_option_id", "outcome", "evaluation",
    "chosen_option", "was_successful", "was_good_decision",
)  # fmt: skip
_LIGHT_EXTRAS = ("service", "paused")


def light_decision_record(record: Record) -> Record:
    """The light form of a decoded decision record: a projection of it, for metrics and
    summaries. No timestamp (``""``), options, context, reasoning or constraints; an
    outcome without result, error, state changes or timestamp; ``chosen_option`` only for
    decisions that did not succeed or were evaluated, which summaries name."""
    light: Record = {"id": record["id"], "timestamp": ""}
    for key in _LIGHT_DECISION:
        light[key] = record[key]
    outcome = record["outcome"]
    if outcome is not None:
        light["outcome"] = {key: outcome[key] for key in _LIGHT_OUTCOME}
    if record["was_successful"] and record["evaluation"] is None:
        light["chosen_option"] = None
    for key in _LIGHT_EXTRAS:
        if key in record:
            light[key] = record[key]
    return light


def problem_record(attributes: Mapping[str, Any], time_ns: int) -> Record:
    """The stored Problem dict of one problem event."""
    get = attributes.get
    return {
        "id": str(get(sc.PROBLEM_ID, "")),
        "severity": str(get(sc.PROBLEM_SEVERITY, "")),
        "description": str(get(sc.PROBLEM_DESCRIPTION, "")),
        "root_cause": _opt_str(get(sc.PROBLEM_ROOT_CAUSE)),
        "decision_id": _opt_str(get(sc.PROBLEM_DECISION_ID)),
        "timestamp": _records.ns_to_iso(time_ns),
        "suggested_fix": _opt_str(get(sc.PROBLEM_SUGGESTED_FIX)),
    }


def problems_of(events: Iterable[EventData]) -> list[Record]:
    """Problem dicts of the problem events among ``events``, in order."""
    return [problem_record(e.attributes, e.time_ns) for e in events if e.name == sc.PROBLEM_EVENT]


#: Sort keys of the run's own decision ids (``dec_N``), which recur in every run.
_ORDER_KEYS: dict[str, tuple[int, str]] = {}
_ORDER_KEYS_MAX = 4096


def _decision_order(decision: Record) -> tuple[int, str]:
    # The run's own decisions by number; those recorded elsewhere after, by time.
    decision_id = decision["id"]
    key = _ORDER_KEYS.get(decision_id)
    if key is None:
        number = _ids.decision_number(decision_id)
        if number is None:
            return (1 << 62, decision["timestamp"])
        key = remember(_ORDER_KEYS, _ORDER_KEYS_MAX, decision_id, (number, ""))
    return key


def run_record(
    attributes: Mapping[str, Any],
    start_ns: int,
    end_ns: int | None,
    decisions: list[Record],
    problems: list[Record],
    *,
    status: str | None = None,
    error: bool = False,
    run_tokens: int = 0,
    trace_id: int | None = None,
    span_id: int | None = None,
    service_name: str | None = None,
) -> Record:
    """The stored Run dict from a run span's attributes and its decision and problem dicts.

    Args:
        attributes: the run span's attributes.
        start_ns: the run span's start time.
        end_ns: its end time, or None while it runs.
        decisions: decision dicts (any order; sorted here).
        problems: problem dicts, in order.
        status: overrides the status the span carries (stuck/cancelled runs).
        error: the span's status was ERROR (used when it carries no run status).
        run_tokens: LLM tokens counted (by the processor) for the run but none of its
            decisions. The run span's ``llm_tokens`` says how many the tracker counted
            before the run ended; the larger of the two counts, so that a run decoded
            from its spans alone (``rebuild`` of an export, the live view) keeps them.
        trace_id: the run's trace id, kept as the extra field ``trace_id`` (32 hex).
        span_id: the run span's id, kept as the extra field ``span_id`` (16 hex).
        service_name: ``service.name`` of the process that made the run span, kept as
            the extra field ``service_name``.
    """
    get = attributes.get
    decisions.sort(key=_decision_order)
    totals = _records.Totals(tokens=max(run_tokens, _int(get(sc.RUN_LLM_TOKENS, 0))))
    nodes = [str(n) for n in get(sc.RUN_NODES, ())]
    seen_nodes = set(nodes)
    for decision in decisions:
        node = decision["node_id"]
        if node not in seen_nodes:
            seen_nodes.add(node)
            nodes.append(node)
        outcome = decision["outcome"]
        if outcome is None:
            totals.add(None)
        else:
            totals.add(outcome["success"], outcome["tokens_used"], outcome["latency_ms"])
    if status is None:
        status = get(sc.RUN_STATUS)
    if status is None:
        # The span's ERROR status is all it says (see _codec.run_span_status).
        status = "running" if end_ns is None else _codec.ended_status(not error)
    status = str(status)
    narrative = str(get(sc.RUN_NARRATIVE, "") or "")
    if not narrative and end_ns is not None:
        narrative = _records.narrative(
            status,
            totals.decisions,
            totals.successful,
            totals.failed,
            [(p["severity"], p["description"]) for p in problems],
            _records.failed_on(
                (
                    d["intent"],
                    None if d["outcome"] is None else d["outcome"]["success"],
                    d.get("paused") is True,
                )
                for d in decisions
            ),
        )
    input_data = _loads(get(sc.RUN_INPUT), {})
    output_data = _loads(get(sc.RUN_OUTPUT), {})
    started = _records.ns_to_datetime(start_ns)
    completed = None if end_ns is None else _records.ns_to_datetime(end_ns)
    record: Record = {
        "id": str(get(sc.RUN_ID, "")),
        "goal_id": str(get(sc.GOAL_ID, "")),
        "started_at": _records.ns_to_iso(start_ns),  # started.isoformat(), from a cache
        "status": status,
        "completed_at": None if end_ns is None else _records.ns_to_iso(end_ns),
        "decisions": decisions,
        "problems": problems,
        "metrics": {
            "total_decisions": totals.decisions,
            "successful_decisions": totals.successful,
            "failed_decisions": totals.failed,
            "total_tokens": totals.tokens,
            "total_latency_ms": totals.latency_ms,
            "nodes_executed": nodes,
            "edges_traversed": [str(e) for e in get(sc.RUN_EDGES, ())],
            "success_rate": _records.success_rate(totals.decisions, totals.successful),
        },
        "narrative": narrative,
        "goal_description": str(get(sc.GOAL_DESCRIPTION, "")),
        "input_data": input_data if isinstance(input_data, dict) else {},
        "output_data": output_data if isinstance(output_data, dict) else {},
        "duration_ms": _records.duration_ms(started, completed),
    }
    reason = get(sc.RUN_END_REASON)
    if reason is not None:
        # Why a run ended without end_run (stuck, cancelled): an extra field, which the
        # schema allows, so people can tell a lost run from a failed one.
        record["end_reason"] = str(reason)
    # Extra fields of LangGraph runs (see docs/integrations/langgraph.md).
    if get(sc.RUN_PAUSED):
        record["paused"] = True
    for key, name in ((sc.RUN_RESUMED_FROM, "resumed_from"), (sc.RUN_THREAD_ID, "thread_id")):
        value = get(key)
        if value is not None:
            record[name] = str(value)
    # Extra fields (the schema allows them): the way from a stored run to its trace.
    if trace_id:
        record["trace_id"] = trace_id_hex(trace_id)
    if span_id:
        record["span_id"] = span_id_hex(span_id)
    if service_name:
        record["service_name"] = service_name
    return record
