"""Where the commands print: a rich console sized for the terminal, and JSON."""

from __future__ import annotations

import json
import os
from typing import Any

import click
from rich.console import Console

__all__ = ["console", "print_json"]


def console() -> Console:
    """A console for people's output: the terminal's width, or 160 columns when piped."""
    out = Console(highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        # Piped: rich would assume 80 columns; let lines be long.
        out.width = 160
    return out


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
