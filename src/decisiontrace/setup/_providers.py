"""Providers users already have: the SDK provider behind a wrapper, and its sampler.

:func:`decisiontrace.setup.configure` adds its processors to a tracer provider already
in place. Two things stand between that and storing every run:

* the installed provider may be a wrapper around the SDK ``TracerProvider`` (logfire's
  proxy holds it in ``provider``; other wrappers name it differently), and processors
  must go to the SDK provider inside;
* the provider's sampler may drop run spans, which no processor ever sees. The sampler
  is wrapped in :class:`~decisiontrace.pipeline.sampling.RecordEveryRunSampler`, which records
  (without exporting) what it would drop of a run, and put back at shutdown.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.sampling import Sampler

from decisiontrace.pipeline.sampling import RecordEveryRunSampler, never_drops

logger = logging.getLogger("decisiontrace")

#: Attributes under which wrappers keep the provider they wrap, in the order tried.
#: ``provider`` is logfire's; ``__wrapped__`` is wrapt's and functools'.
_WRAPPED_ATTRIBUTES = (
    "provider",
    "tracer_provider",
    "_provider",
    "_tracer_provider",
    "_delegate",
    "__wrapped__",
)
_MAX_DEPTH = 4


def find_sdk_provider(candidate: object) -> TracerProvider | None:
    """The SDK ``TracerProvider`` that ``candidate`` is or wraps, or None.

    Looks through up to four layers of wrappers, each holding the next under one of
    the usual attribute names. Never raises: a property that fails counts as absent.
    """
    seen: set[int] = set()
    current: object = candidate
    for _ in range(_MAX_DEPTH + 1):
        if isinstance(current, TracerProvider):
            return current
        seen.add(id(current))
        inner = _wrapped(current, seen)
        if inner is None:
            return None
        current = inner
    return None


def _wrapped(wrapper: object, seen: set[int]) -> object | None:
    for name in _WRAPPED_ATTRIBUTES:
        try:
            inner: object = getattr(wrapper, name, None)
        except Exception:  # expected: a property of someone else's object, not ours to debug
            continue
        if inner is not None and id(inner) not in seen and hasattr(inner, "get_tracer"):
            return inner
    return None


class SamplerWrap:
    """The wrapping of one provider's sampler, undone by :meth:`restore`."""

    def __init__(self, provider: TracerProvider, original: Sampler, wrapper: Sampler) -> None:
        self.provider = provider
        self.original = original
        self.wrapper = wrapper

    def restore(self) -> None:
        """Put the user's sampler back, where the wrapper is still in place."""
        try:
            if self.provider.sampler is self.wrapper:
                self.provider.sampler = self.original
            for tracer in _tracers(self.provider):
                if tracer.sampler is self.wrapper:
                    tracer.sampler = self.original
        except Exception:  # expected: the user's provider refuses the change
            logger.warning("decisiontrace: could not restore the TracerProvider's sampler")


def record_every_run(provider: TracerProvider) -> SamplerWrap | None:
    """Wrap ``provider``'s sampler so that runs it would drop are recorded, not exported.

    Tracers the provider made before are updated too, where the SDK lists them. Where
    this cannot be done, a warning names the fix. Returns the wrapping, or None when
    nothing was changed.
    """
    original = getattr(provider, "sampler", None)
    if not isinstance(original, Sampler):
        _cannot(provider, "its sampler is not an OpenTelemetry SDK Sampler")
        return None
    if never_drops(original):
        return None
    wrapper = RecordEveryRunSampler(original)
    try:
        provider.sampler = wrapper
    except Exception:  # expected: the user's provider refuses the change
        _cannot(provider, "its sampler cannot be replaced")
        return None
    # The SDK hands each tracer the provider's sampler when it makes it, so tracers made
    # before configure() (an instrumentation set up earlier) would keep the old one.
    if not isinstance(getattr(provider, "_tracers", None), dict):
        logger.warning(
            "decisiontrace: tracers created before configure() keep the sampler %s, which "
            "may drop runs: call decisiontrace.configure() before creating tracers, or "
            "give the provider KeepEveryRunSampler(export_sampler=<your sampler>)",
            original.get_description(),
        )
    for tracer in _tracers(provider):
        if tracer.sampler is original:
            tracer.sampler = wrapper
    logger.debug(
        "decisiontrace: the TracerProvider's sampler %s now records the runs it drops "
        "(they are stored, not exported)",
        original.get_description(),
    )
    return SamplerWrap(provider, original, wrapper)


def _tracers(provider: TracerProvider) -> list[Tracer]:
    """The tracers the provider made, where this SDK version keeps a list of them."""
    tracers: Any = getattr(provider, "_tracers", None)
    if not isinstance(tracers, dict):
        return []
    return [tracer for tracer in list(tracers.values()) if isinstance(tracer, Tracer)]


def _cannot(provider: object, why: str) -> None:
    logger.warning(
        "decisiontrace: runs the sampler of %s drops will not be stored (%s); give the "
        "provider KeepEveryRunSampler(export_sampler=<your sampler>) from "
        "decisiontrace.pipeline.sampling",
        type(provider).__name__,
        why,
    )
