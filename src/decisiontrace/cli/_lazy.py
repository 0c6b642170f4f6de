"""Command groups whose commands in other modules are imported only when needed.

``decisiontrace runs list`` should not pay for the modules of ``evaluate`` (the
evaluation package, rich's progress bars), ``decisions``, ``serve`` or ``tail``: a
:class:`LazyGroup` names such commands by ``"module:attribute"`` and imports one when it
is run, or when the group lists its commands (``--help``).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A click group with ``lazy_commands``: command name -> ``"module:attribute"``."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self.lazy_commands.pop(cmd_name, None)
        if where is not None:
            module, _, attribute = where.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):  # a wrong table: fail at once
                raise TypeError(f"{where} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
