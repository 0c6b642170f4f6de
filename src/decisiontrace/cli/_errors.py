"""Errors to exit statuses: every failure of a command becomes one line on stderr.

Exit status 0 when the command did what was asked, 1 when it ran but found problems,
2 for bad input (usage, unknown run ids, a store or file that cannot be read). Never a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from pydantic_core import ValidationError  # pydantic's, without importing pydantic

from decisiontrace.cli._lazy import LazyGroup
from decisiontrace.stores import StoreError

__all__ = ["App", "CommandError", "fail", "one_line"]


class CommandError(Exception):
    """A command could not do what was asked; the message says why and what to do."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(error: BaseException | str) -> str:
    """An exception's message on one line (pydantic's are several)."""
    lines = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and not line.strip().startswith("For further information")
    ]
    fallback = error if isinstance(error, str) else type(error).__name__
    return "; ".join(lines) or fallback


def fail(message: str) -> None:
    """Print ``error: message`` on stderr."""
    click.echo(f"error: {message}", err=True)


class App(LazyGroup):
    """The top-level group: turns every error into one line on stderr and an exit status."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit with its status, or return it without ``standalone_mode``."""
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
            code = result if isinstance(result, int) else 0
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help() if error.ctx else self.name)
            code = 2
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "decisiontrace"
            fail(f"{one_line(error.format_message())} (see '{where} --help')")
            code = 2
        except click.ClickException as error:
            fail(one_line(error.format_message()))
            code = error.exit_code
        except click.Abort:
            fail("aborted")
            code = 1
        except CommandError as error:
            fail(one_line(error))
            code = error.exit_code
        except ValidationError as error:
            fail(f"a stored record does not match the Run schema: {one_line(error)}")
            code = 2
        except (StoreError, ValueError, TypeError, OSError) as error:
            fail(one_line(error))
            code = 2
        if standalone_mode:
            sys.exit(code)
        return code
