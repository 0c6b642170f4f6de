"""``DecisionInstrumentor``: decision telemetry for code the user cannot edit.

It has the shape of opentelemetry-python-contrib's ``BaseInstrumentor`` (one instance per
class, ``instrument``/``uninstrument`` that warn and do nothing when repeated,
``instrumentation_dependencies``) without depending on ``opentelemetry-instrumentation``,
and is registered under the ``opentelemetry_instrumentor`` entry point so tools that
discover instrumentors find it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import wrapt

from decisiontrace.decorators._decision import DecisionDecorator as _DecisionDecorator
from decisiontrace.decorators._kinds import Decorator as _Decorator
from decisiontrace.decorators._node import NodeDecorator as _NodeDecorator
from decisiontrace.tracking.tracker import DecisionTracker

__all__ = ["DecisionInstrumentor"]

logger = logging.getLogger("decisiontrace")


class _Patch:
    """One patched attribute and what restores it exactly."""

    __slots__ = ("attribute", "created", "original", "parent", "target", "wrapper")

    def __init__(
        self, target: str, parent: Any, attribute: str, original: Any, created: bool, wrapper: Any
    ) -> None:
        self.target = target
        self.parent = parent
        self.attribute = attribute
        self.original = original
        self.created = created  # the attribute was inherited: restoring means deleting it
        self.wrapper = wrapper

    def undo(self) -> None:
        current = _own_attribute(self.parent, self.attribute)
        if current is not self.wrapper:
            logger.warning(
                "decisiontrace: %s was replaced after it was instrumented; left as it is",
                self.target,
            )
            return
        if self.created:
            delattr(self.parent, self.attribute)
        else:
            setattr(self.parent, self.attribute, self.original)


_MISSING = object()


def _own_attribute(parent: Any, attribute: str) -> Any:
    """The attribute as stored on ``parent`` itself (raw descriptor, no binding)."""
    try:
        return vars(parent).get(attribute, _MISSING)
    except TypeError:  # no __dict__ (e.g. __slots__ instance)
        return getattr(parent, attribute, _MISSING)


class DecisionInstrumentor:
    """Records decisions of functions and methods named by path, without editing them.

    Example::

        DecisionInstrumentor().instrument(
            targets={
                "support.agent:Router.route": {
                    "intent": "Route the ticket",
                    "options": ["billing", "bug", "howto"],
                },
                "support.agent:classify": "classifier",  # a node
            }
        )

    Like contrib instrumentors, there is one instance per class
    (``DecisionInstrumentor() is DecisionInstrumentor()``); instrumenting twice, or
    uninstrumenting when nothing is instrumented, logs a warning and does nothing.
    """

    _instance: ClassVar[DecisionInstrumentor | None] = None
    _is_instrumented_by_opentelemetry: bool = False
    _patches: list[_Patch]

    def __new__(cls, *args: Any, **kwargs: Any) -> DecisionInstrumentor:
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._patches = []
            cls._instance = instance
        return cls._instance

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        """Whether :meth:`instrument` has patched targets that are still patched."""
        return self._is_instrumented_by_opentelemetry

    def instrumentation_dependencies(self) -> Collection[str]:
        """No third-party package is required: the targets are the user's own code."""
        return ()

    def instrument(self, **kwargs: Any) -> None:
        """Patch the targets.

        Args:
            targets: ``{"pkg.module:Qualified.name": spec}``. ``spec`` is a dict of the
                keyword arguments :func:`~decisiontrace.decision` takes, or a str: the
                node id for :func:`~decisiontrace.node`.
            tracker: the tracker for ``auto_run`` specs that name none.
            **kwargs: other keyword arguments (``skip_dep_check``, ``tracer_provider``,
                ... that auto-instrumentation passes) are accepted and ignored.

        Called without targets (as ``opentelemetry-instrument`` does) it has nothing to
        patch and stays uninstrumented, so a later call with targets still works.

        Raises:
            ValueError: a target is malformed, cannot be imported or resolved. Targets
                patched before the bad one are restored first.
            TypeError: a spec is neither a dict nor a str, has unknown keys, or names
                something that is not callable.
        """
        if self._is_instrumented_by_opentelemetry:
            logger.warning("decisiontrace: attempting to instrument while already instrumented")
            return
        targets = kwargs.get("targets")
        if not targets:
            logger.debug("decisiontrace: DecisionInstrumentor.instrument() without targets")
            return
        self._instrument(targets, kwargs.get("tracker"))
        self._is_instrumented_by_opentelemetry = True

    def uninstrument(self, **kwargs: Any) -> None:
        """Restore every patched target to the very object it was before."""
        if not self._is_instrumented_by_opentelemetry:
            logger.warning("decisiontrace: attempting to uninstrument while already uninstrumented")
            return
        self._uninstrument()
        self._is_instrumented_by_opentelemetry = False

    def _instrument(self, targets: Any, tracker: Any) -> None:
        if not isinstance(targets, Mapping):
            raise TypeError(f"targets must be a dict, got {type(targets).__name__}")
        if tracker is not None and not isinstance(tracker, DecisionTracker):
            raise TypeError(
                f"tracker must be a DecisionTracker or None, got {type(tracker).__name__}"
            )
        try:
            for target, spec in targets.items():
                self._patches.append(_patch(target, spec, tracker))
        except BaseException:
            self._uninstrument()
            raise

    def _uninstrument(self) -> None:
        patches, self._patches = self._patches, []
        for patch in reversed(patches):
            patch.undo()


def _decorator_for(target: str, spec: Any, tracker: DecisionTracker | None) -> _Decorator:
    if isinstance(spec, str):
        return _NodeDecorator(spec)
    if isinstance(spec, Mapping):
        arguments = dict(spec)
        if tracker is not None and arguments.get("tracker") is None:
            arguments["tracker"] = tracker
        try:
            return _DecisionDecorator(**arguments)
        except TypeError as error:
            raise TypeError(f"{target}: {error}") from None
    raise TypeError(
        f"{target}: spec must be a dict of decision() arguments or a node id (str), "
        f"got {type(spec).__name__}"
    )


def _patch(target: Any, spec: Any, tracker: DecisionTracker | None) -> _Patch:
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"target must look like 'pkg.module:Qualified.name', got {target!r}")
    module_name, path = target.split(":")
    if not module_name or not path:
        raise ValueError(f"target must look like 'pkg.module:Qualified.name', got {target!r}")
    decorator = _decorator_for(target, spec, tracker)
    try:
        module = importlib.import_module(module_name)
        parent, attribute, original = wrapt.resolve_path(module, path)
    except Exception as error:  # expected: the user's target (bad configuration)
        raise ValueError(f"cannot resolve target {target!r}: {error}") from error
    # Built from the raw original (a classmethod object, say) so its kind is known.
    wrapper_function = decorator.wrapper_for(original)
    created = _own_attribute(parent, attribute) is _MISSING
    wrapper = wrapt.wrap_function_wrapper(parent, attribute, wrapper_function)
    return _Patch(target, parent, attribute, original, created, wrapper)
