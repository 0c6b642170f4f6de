"""Options the commands share: ``--store``, ``--json``, and the run filters ``--goal`` and
``--since`` (an ISO date or time, or an age like 2h)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from decisiontrace.cli._store import STORE_KEY
from decisiontrace.stores import STORE_ENV_VAR, default_store_url

__all__ = ["Since", "filters", "json_option", "store_option"]

F = TypeVar("F", bound=Callable[..., Any])

_STORE_HELP = (
    "Store URL or path: sqlite:///relative.db, sqlite:////absolute.db, file:///folder, "
    "postgresql://user@host:5432/db, a path. "
    f"Default: ${STORE_ENV_VAR}, else {default_store_url()}."
)
_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _remember_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[STORE_KEY] = value  # meta is shared: a subcommand's --store wins


def store_option(func: F) -> F:
    """``--store URL``, kept in the context for :func:`~decisiontrace.cli._store.store_url`."""
    option = click.option(
        "--store",
        metavar="URL",
        expose_value=False,
        callback=_remember_store,
        help=_STORE_HELP,
    )
    return option(func)


def json_option(func: F) -> F:
    """``--json``, passed as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")(func)


if TYPE_CHECKING:
    _ParamType = click.ParamType[datetime, Any]
else:  # click < 8.2 has no type parameters at run time
    _ParamType = click.ParamType


class Since(_ParamType):
    """An ISO date or time (local unless it has an offset), or an age like 30m, 2h, 7d."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value)
        relative = _RELATIVE.match(text)
        if relative:
            amount, unit = int(relative.group(1)), relative.group(2)
            return datetime.now() - timedelta(**{_UNITS[unit]: amount})
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            self.fail(
                f"{text!r} is neither an ISO date/time (2026-05-10, 2026-05-10T14:00) nor an "
                "age (30m, 2h, 7d, 1w)",
                param,
                ctx,
            )
        if moment.tzinfo is not None:
            moment = moment.astimezone().replace(tzinfo=None)  # records hold local time
        return moment


def filters(func: F) -> F:
    """``--goal`` and ``--since``, passed as ``goal`` and ``since``."""
    for option in reversed(
        [
            click.option("--goal", metavar="GOAL_ID", help="Only runs toward this goal."),
            click.option(
                "--since",
                type=Since(),
                help="Only runs started at or after this: an ISO date/time or an age "
                "(30m, 2h, 7d).",
            ),
        ]
    ):
        func = option(func)
    return func
