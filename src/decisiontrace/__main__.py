"""``python -m decisiontrace``: the command line (for now, ``rebuild``).

Kept small on purpose: errors are one line on stderr, never a traceback; exit status 0
when everything was read, 1 when some lines or fields were malformed (the rest was
rebuilt), 2 when nothing could be done (bad arguments, unreadable file, bad store).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from decisiontrace.rebuild import rebuild
from decisiontrace.stores import StoreError, open_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m decisiontrace")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "rebuild",
        help="rebuild Run records from OTLP JSON traces",
        description="Rebuild Run records from OTLP JSON (the collector's file exporter "
        "output, one request per line, or a trace downloaded from Jaeger or Tempo) and "
        "save them to a store.",
    )
    command.add_argument("file", help="OTLP JSON file, or - for standard input")
    command.add_argument(
        "--store",
        help="store URL or path (default: $DECISIONTRACE_STORE, else the default store)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        store = open_store(args.store)
    except (ValueError, TypeError, StoreError, OSError) as error:
        print(f"error: --store: {error}", file=sys.stderr)
        return 2
    try:
        result = rebuild(sys.stdin if args.file == "-" else args.file, store)
    except (OSError, UnicodeDecodeError) as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the store failed: one line, never a traceback
        print(f"error: {store.url}: {error}", file=sys.stderr)
        return 2
    finally:
        store.close()
    for message in result.errors:
        print(f"{args.file}: {message}", file=sys.stderr)
    print(
        f"rebuilt {result.runs_written} runs from {result.spans_read} spans "
        f"({result.lines_read} lines) into {store.url}"
    )
    if result.errors:
        return 1 if result.spans_read else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
