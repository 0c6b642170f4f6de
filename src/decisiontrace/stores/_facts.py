"""What the analytics read of each decision, as columns the SQL stores keep at write time.

``stats``, ``decisions`` search and the report read these columns (and the run
listing columns) instead of decoding every stored run. One row per decision of the
stored (merged) run, replaced whenever the run is saved again; judgements of decisions
stay in their own table and are joined when needed.

The columns, in :data:`COLUMNS` order (``run_id`` and the row's position ``seq`` come
first in each store's table):

- ``decision_id``, ``node_id``, ``decision_type``, ``chosen_option_id``;
- ``chosen_listed``: 1 when the chosen id is one of the decision's options (what the
  statistics call its chosen option), else 0;
- ``confidence``: the confidence the agent gave the chosen option, NULL when it gave
  none (``decisiontrace.spanmodel._records.stated_confidence``) or the option is not listed;
- ``option_ids``: the ids of the options offered, as a JSON list;
- ``outcome``: NULL without an outcome, 1 success, 0 failure; ``tokens`` and
  ``latency_ms`` of the outcome (0 without one);
- ``judged``: 1 when the record itself carries judgements or an evaluation (judgements
  recorded later are in the store's ``evaluations`` table);
- ``text``: what ``decisions --text`` searches, case-folded: intent, reasoning, the
  options' ids and descriptions, the outcome's summary and error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from decisiontrace.spanmodel._records import stated_confidence
from decisiontrace.stores._stored_form import dumps

Record = dict[str, Any]

COLUMNS = (
    "decision_id",
    "node_id",
    "decision_type",
    "chosen_option_id",
    "chosen_listed",
    "confidence",
    "option_ids",
    "outcome",
    "tokens",
    "latency_ms",
    "judged",
    "text",
)

#: Calibration buckets over [0, 1] (the last includes 1.0), as ``stats`` defines them.
BUCKETS = 10
#: The largest ``tokens`` and ``latency_ms`` a row holds, either sign (larger ones are
#: held as this bound): the SQL sums over millions of decisions must fit in int64, and
#: a run recorded elsewhere (ingest, ``rebuild``) may carry any integer.
COLUMN_MAX = 2**40


def decision_facts(record: Record) -> list[tuple[Any, ...]]:
    """``(seq, *COLUMNS)`` of each decision of a run record, in the record's order."""
    return [row[1:] for row in fact_rows(None, record)]


#: What an options list gives for a chosen id, by the list's id and the chosen id (the
#: list kept beside, so that its id stays its own): see :func:`fact_rows`.
Offers = dict[tuple[int, str], tuple[Any, "_Offer"]]
#: How many entries an ``Offers`` passed to :func:`fact_rows` keeps (emptied when full).
OFFERS_MAX = 256


def fact_rows(run_id: Any, record: Record, offers: Offers | None = None) -> list[tuple[Any, ...]]:
    """``(run_id, seq, *COLUMNS)`` of each decision of a run record, in the record's
    order: the rows of a store's ``decisions`` table.

    What a decision's options give is worked out once per options list and chosen id:
    of this record, or of every record given the same ``offers``, which is only for
    records whose option lists nobody changes (the processor's writer: decisions
    offering the same options share one list across runs, see
    ``spanmodel._decode.OptionsCache``).
    """
    # Runs for every stored decision on the writer thread: each key is read once, text
    # already text is not converted again, and the last options list's offer is reused.
    rows: list[tuple[Any, ...]] = []
    if offers is None:
        offers = {}
    elif len(offers) >= OFFERS_MAX:
        offers.clear()
    last_options: Any = None
    last_chosen = ""
    offer = _NO_OFFER
    for seq, decision in enumerate(record.get("decisions") or ()):
        if not isinstance(decision, dict):
            continue
        get = decision.get
        chosen_id = get("chosen_option_id")
        if type(chosen_id) is not str:
            chosen_id = str(chosen_id or "")
        options = get("options") or ()
        if options is not last_options or chosen_id != last_chosen:
            key = (id(options), chosen_id)
            known = offers.get(key)
            if known is None or known[0] is not options:
                known = offers[key] = (options, _offer(options, chosen_id))
            offer = known[1]
            last_options, last_chosen = options, chosen_id
        intent, reasoning = get("intent"), get("reasoning")
        words = [
            intent if type(intent) is str else str(intent or ""),
            reasoning if type(reasoning) is str else str(reasoning or ""),
        ]
        if offer.words is not None:
            words.append(offer.words)
        outcome = get("outcome")
        if isinstance(outcome, dict):
            summary, error = outcome.get("summary"), outcome.get("error")
            words.append(summary if type(summary) is str else str(summary or ""))
            words.append(error if type(error) is str else str(error or ""))
            result: int | None = 1 if outcome.get("success") else 0
            tokens, latency = outcome.get("tokens_used"), outcome.get("latency_ms")
            if type(tokens) is not int or not -COLUMN_MAX <= tokens <= COLUMN_MAX:
                tokens = _int(tokens)
            if type(latency) is not int or not -COLUMN_MAX <= latency <= COLUMN_MAX:
                latency = _int(latency)
        else:
            result, tokens, latency = None, 0, 0
        rows.append(
            (
                run_id,
                seq,
                str(get("id", "")),
                str(get("node_id", "unknown")),
                str(get("decision_type", "custom")),
                chosen_id,
                offer.listed,
                offer.confidence,
                offer.ids,
                result,
                tokens,
                latency,
                1 if get("evaluations") or get("evaluation") else 0,
                "\n".join(words).casefold(),
            )
        )
    return rows


@dataclass(slots=True)
class _Offer:
    """What one options list says for a chosen id: ``chosen_listed``, ``confidence`` and
    ``option_ids`` columns, and the options' lines of the search text (None: no option)."""

    listed: int
    confidence: float | None
    ids: str
    words: str | None


def _offer(options: Any, chosen_id: str) -> _Offer:
    chosen = None
    ids: list[str] = []
    words: list[str] = []
    for option in options:
        if not isinstance(option, dict):
            continue
        option_id = option.get("id", "")
        if chosen is None and option_id == chosen_id and "id" in option:
            chosen = option
        id_text = str(option_id)
        ids.append(id_text)
        words.append(id_text)
        words.append(str(option.get("description") or ""))
    return _Offer(
        0 if chosen is None else 1,
        None if chosen is None else stated_confidence(chosen),
        dumps(ids),
        "\n".join(words) if words else None,
    )


#: What ``fact_rows`` starts from (replaced at the first decision).
_NO_OFFER = _Offer(0, None, "[]", None)


@dataclass
class DecisionTallies:
    """Counts over the decisions of the runs that match some filters, as a SQL store
    keeps or computes them (``decisiontrace.cli.stats`` turns them into statistics).

    Attributes:
        runs_by_status: matching runs per status.
        counts: ``(node_id, decision_type, chosen_listed, chosen_option_id, outcome,
            decisions, tokens, confidences, confidence_sum)``: decisions counted by node,
            type, choice (``chosen_listed`` 1 when the chosen id is one of the options)
            and outcome (-1 none, 0 failure, 1 success), with their tokens and the
            count and sum of the stated confidences of their chosen options.
        latencies: ``(node_id, decision_type, latency_ms, decisions)`` over decisions
            with an outcome.
        chosen_latencies: ``(node_id, decision_type, chosen_option_id, latency_ms,
            decisions)`` over those whose chosen id is one of their options.
        offered: ``(node_id, decision_type, option_ids, decisions)``: how many decisions
            offered each list of option ids (a JSON list).
        calibration: ``(bucket, decisions, successes, confidence_sum)`` over decisions
            with an outcome and a stated confidence of their chosen option.
        judged_run_ids: the matching runs, newest first, with a decision that has a
            judgement or an evaluation (their records are read for those statistics).
    """

    runs_by_status: dict[str, int] = field(default_factory=dict)
    counts: list[tuple[str, str, int, str, int, int, int, int, float]] = field(default_factory=list)
    latencies: list[tuple[str, str, int, int]] = field(default_factory=list)
    chosen_latencies: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    offered: list[tuple[str, str, str, int]] = field(default_factory=list)
    calibration: list[tuple[int, int, int, float]] = field(default_factory=list)
    judged_run_ids: list[str] = field(default_factory=list)


def bucket_of(confidence: float) -> int:
    """The calibration bucket of a confidence (as ``stats`` computes it)."""
    return min(BUCKETS - 1, max(0, int(confidence * BUCKETS)))


def _int(value: Any) -> int:
    """A recorded count as a column value: 0 when it is no number, bounded by COLUMN_MAX."""
    try:
        number = int(value or 0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float("inf")
        return 0
    return max(-COLUMN_MAX, min(COLUMN_MAX, number))


__all__ = [
    "BUCKETS",
    "COLUMNS",
    "DecisionTallies",
    "Offers",
    "bucket_of",
    "decision_facts",
    "fact_rows",
]
