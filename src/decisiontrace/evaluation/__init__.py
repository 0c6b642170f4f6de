"""Judging decisions after the fact.

:func:`evaluate` records one evaluator's judgement of a stored decision: in the store
(the decision's ``evaluations`` extra field, one judgement per evaluator, and the
original's ``evaluation`` field for a full :class:`~decisiontrace.DecisionEvaluation`)
and as a ``gen_ai.evaluation.result`` OpenTelemetry event parented to the decision's
span. :mod:`decisiontrace.evaluation.evaluators` holds the built-in evaluators
(``outcome``, ``better-option``) and :mod:`decisiontrace.evaluation.runner` runs an
evaluator over stored runs, as ``decisiontrace evaluate`` does.
"""

from decisiontrace.evaluation.api import evaluate
from decisiontrace.evaluation.judgement import Judgement, judgements_of

__all__ = ["Judgement", "evaluate", "judgements_of"]
