"""``python -m decisiontrace``: the ``decisiontrace`` command line.

``python -m decisiontrace rebuild FILE --store URL`` and every other command of
:mod:`decisiontrace.cli.app`; errors are one line on stderr, the exit status 0, 1 or 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from decisiontrace.cli.app import main as app

    code: int = app.main(
        args=list(sys.argv[1:] if argv is None else argv),
        prog_name="python -m decisiontrace",
        standalone_mode=False,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
