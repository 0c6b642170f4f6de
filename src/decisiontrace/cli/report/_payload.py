"""The decision details the report's script renders on demand, as JSON safe inside HTML.

A page of 2,000 runs opens quickly when it carries only each run's summary as markup and
its decisions as data, drawn when the run is opened. That data is agent data (user input,
model output), so it is embedded as inert text: :func:`embed_json` escapes every
character that could end the ``<script type="application/json">`` element or start
markup inside it, and the script reads it with ``JSON.parse`` and writes it with
``textContent`` only.

Field names are short because they repeat thousands of times; the script in
:mod:`._assets` is their only reader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from decisiontrace.cli._links import run_trace_id, trace_url
from decisiontrace.models import Decision, Option, Run
from decisiontrace.spanmodel._jsonsafe import dumps

__all__ = ["all_payloads", "embed_json", "run_payload"]

#: Longest JSON text shown for one input, output, result or input context.
MAX_VALUE_CHARS = 2000
#: Characters that must not appear literally inside an HTML script element: ``<`` could
#: start ``</script>`` or ``<!--``, ``>`` and ``&`` are escaped for good measure, and
#: U+2028/U+2029 end lines in older JavaScript parsers.
_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def embed_json(value: Any) -> str:
    """``value`` as JSON text that can sit inside a ``<script>`` element unchanged.

    Only ``<``, ``>``, ``&``, U+2028 and U+2029 are rewritten, as JSON ``\\u`` escapes,
    so ``JSON.parse`` returns exactly the original strings.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_SCRIPT_ESCAPES)


def _number(value: Any) -> float | None:
    """A finite number, or None (NaN and infinities would make the JSON invalid)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _json_text(value: Any) -> str:
    """Agent data shown as compact JSON, bounded; empty for nothing worth showing."""
    if value is None or value == {} or value == []:
        return ""
    text, _problem = dumps(value, max_chars=MAX_VALUE_CHARS)
    return text


def _offset_ms(start: datetime, moment: datetime | None) -> float | None:
    if moment is None:
        return None
    try:
        return round((moment - start).total_seconds() * 1000, 1)
    except TypeError:  # one aware and one naive datetime: no honest offset
        return None


def _web_link(url: str | None) -> str | None:
    """Only web links are followed: a template of another scheme (javascript:) is not."""
    return url if url and url.startswith(("https://", "http://")) else None


def _option(option: Option) -> list[Any]:
    extra = option.model_extra or {}
    # A confidence the agent never gave is not a number to show (firsthour's marker).
    confidence = None if extra.get("confidence_defaulted") is True else _number(option.confidence)
    return [
        _text(option.id),
        _text(option.description),
        confidence,
        [_text(p) for p in option.pros],
        [_text(c) for c in option.cons],
    ]


def _evaluations(decision: Decision) -> list[list[Any]]:
    """The ``evaluations`` extra (one judgement per evaluator), as rows of text.

    A record with only the original's single ``evaluation`` shows that one instead.
    """
    raw = (decision.model_extra or {}).get("evaluations")
    if not isinstance(raw, list):
        evaluation = decision.evaluation
        if evaluation is None:
            return []
        verdict = "goal aligned" if evaluation.goal_aligned else "not goal aligned"
        if evaluation.better_option_existed:
            verdict += f"; better option: {evaluation.better_option_id or '?'}"
        return [["evaluation", _number(evaluation.outcome_quality), verdict,
                 _text(evaluation.explanation)]]  # fmt: skip
    rows = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        score = item.get("score")
        rows.append(
            [
                _text(item.get("evaluator", item.get("name", ""))),
                _number(score) if _number(score) is not None else _text(score),
                _text(item.get("label", "")),
                _text(item.get("explanation", "")),
            ]
        )
    return rows


def _decision(
    decision: Decision, run: Run, start: datetime, template: str | None
) -> dict[str, Any]:
    outcome = decision.outcome
    at = _offset_ms(start, decision.timestamp)
    ended = _offset_ms(start, outcome.timestamp) if outcome is not None else None
    payload: dict[str, Any] = {
        "id": _text(decision.id),
        "node": _text(decision.node_id),
        "intent": _text(decision.intent),
        "type": decision.decision_type.value,
        "chosen": _text(decision.chosen_option_id),
        "why": _text(decision.reasoning),
        "at": at,
        "end": ended,
        "opts": [_option(option) for option in decision.options],
        "ctx": _json_text(decision.input_context),
        "cons": [_text(c) for c in decision.active_constraints],
        "ev": _evaluations(decision),
    }
    if outcome is not None:
        payload["out"] = {
            "ok": outcome.success,
            "err": _text(outcome.error),
            "sum": _text(outcome.summary),
            "res": _json_text(outcome.result),
            "tok": outcome.tokens_used,
            "ms": outcome.latency_ms,
        }
    extra = decision.model_extra or {}
    span_id = extra.get("span_id")
    if isinstance(span_id, str):
        payload["span"] = span_id
        # A link of its own only when the template can point at the decision's span.
        if template and "{span_id}" in template:
            link = _web_link(trace_url(run, decision, template=template))
            if link:
                payload["url"] = link
    service = extra.get("service")  # set when another process than the run's made it
    if isinstance(service, str) and service:
        payload["svc"] = service
    if outcome is None and extra.get("paused") is True:
        payload["paused"] = True
    return payload


def run_payload(run: Run, template: str | None) -> dict[str, Any]:
    """Everything the script shows when ``run`` is opened.

    ``template`` is a trace link template (``DECISIONTRACE_TRACE_URL``'s form), or None.
    """
    start = run.started_at
    payload: dict[str, Any] = {
        "goal": _text(run.goal_description),
        "story": _text(run.narrative),
        "in": _json_text(run.input_data),
        "out": _json_text(run.output_data),
        "end": _offset_ms(start, run.completed_at),
        "d": [_decision(decision, run, start, template) for decision in run.decisions],
        "p": [
            [
                _text(problem.severity),
                _text(problem.description),
                _text(problem.decision_id),
                _text(problem.root_cause),
                _text(problem.suggested_fix),
            ]
            for problem in run.problems
        ],
    }
    extra = run.model_extra or {}
    if extra.get("paused") is True:  # a LangGraph run stopped at an interrupt
        payload["paused"] = True
    for field, key in (("thread_id", "thread"), ("resumed_from", "resumed")):
        if isinstance(extra.get(field), str) and extra[field]:
            payload[key] = extra[field]
    trace_id = run_trace_id(run)
    if trace_id is not None:
        payload["trace"] = trace_id
        link = _web_link(trace_url(run, template=template)) if template else None
        if link:
            payload["url"] = link
    return payload


def all_payloads(runs: Sequence[Run], template: str | None) -> list[dict[str, Any]]:
    """One payload per run, in the order of ``runs``."""
    return [run_payload(run, template) for run in runs]
