"""Generators and async generators, driven one resumption at a time.

A decorated generator's telemetry (its decision span, its run, its node) is made current
around each ``next``/``send``/``throw`` and never across a ``yield``, so a generator
finalized in another context (garbage collection, asyncio's ``shutdown_asyncgens``)
never trips OpenTelemetry's "Failed to detach context".
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from decisiontrace.decorators._kinds import GENERATOR


class Session:
    """What a generator driver does around the iteration; the base does nothing."""

    __slots__ = ()

    def begin(self) -> None:
        """Called at the first resumption."""

    def enter(self) -> Any:
        """Make this session's context current; returns what ``leave`` needs."""

    def leave(self, tokens: Any) -> None:
        """Undo ``enter`` (same resumption, so the same context)."""

    def returned(self, value: Any, items: int) -> None:
        """The generator finished (``value`` is what it returned)."""

    def closed(self, items: int) -> None:
        """The consumer closed the generator before it finished."""

    def failed(self, exc: BaseException) -> None:
        """The generator raised ``exc``."""


def items_text(count: int) -> str:
    """``"1 item"``, ``"3 items"``: for outcome summaries."""
    return f"{count} item" if count == 1 else f"{count} items"


def drive_generator(gen: Generator[Any, Any, Any], session: Session) -> Generator[Any, Any, Any]:
    """``yield from gen`` with ``session`` entered around every resumption of ``gen``."""
    session.begin()
    items = 0
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = session.enter()
        try:
            if to_throw is None:
                item = gen.send(to_send)
            else:
                try:
                    item = gen.throw(to_throw)
                finally:
                    to_throw = None
        except StopIteration as stop:
            session.returned(stop.value, items)
            return stop.value
        except BaseException as exc:
            session.failed(exc)
            raise
        finally:
            session.leave(tokens)
        items += 1
        try:
            to_send = yield item
        except GeneratorExit:
            tokens = session.enter()
            try:
                gen.close()
            except BaseException as exc:
                session.failed(exc)
                raise
            finally:
                session.leave(tokens)
            session.closed(items)
            raise
        except BaseException as exc:  # expected: the consumer's, thrown into the generator
            to_throw, to_send = exc, None


async def drive_async_generator(
    agen: AsyncGenerator[Any, Any], session: Session
) -> AsyncGenerator[Any, Any]:
    """``async for`` over ``agen``, re-yielding, with ``session`` entered per resumption."""
    session.begin()
    items = 0
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = session.enter()
        try:
            if to_throw is None:
                item = await agen.asend(to_send)
            else:
                try:
                    item = await agen.athrow(to_throw)
                finally:
                    to_throw = None
        except StopAsyncIteration:
            session.returned(None, items)
            return
        except BaseException as exc:
            session.failed(exc)
            raise
        finally:
            session.leave(tokens)
        items += 1
        try:
            to_send = yield item
        except GeneratorExit:
            # aclose(), by the consumer or by asyncio's finalizer: close the inner one too.
            tokens = session.enter()
            try:
                await agen.aclose()
            except BaseException as exc:
                session.failed(exc)
                raise
            finally:
                session.leave(tokens)
            session.closed(items)
            raise
        except BaseException as exc:  # expected: the consumer's, thrown into the generator
            to_throw, to_send = exc, None


def drive(kind: int, gen: Any, session: Session) -> Any:
    """The driver for a generator of ``kind`` (generator or async generator)."""
    if kind == GENERATOR:
        return drive_generator(gen, session)
    return drive_async_generator(gen, session)
