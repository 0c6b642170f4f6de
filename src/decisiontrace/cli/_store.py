"""The store a command reads: its URL from ``--store``, the environment or the default,
opened without ever creating one, and the runs loaded from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from decisiontrace.cli._errors import CommandError
from decisiontrace.stores import STORE_ENV_VAR, RunStore, default_store_url, open_store

if TYPE_CHECKING:
    from decisiontrace.models import Run

__all__ = [
    "STORE_KEY", "load_run", "load_runs", "open_existing", "open_for_reading",
    "resolve_run_id", "short_id", "store_url",
]  # fmt: skip

#: Where ``--store`` is kept in ``click.Context.meta``, shared by the group and subcommands.
STORE_KEY = "decisiontrace.store"


def store_url(ctx: click.Context) -> str:
    """``--store``, else ``$DECISIONTRACE_STORE``, else the default store."""
    url = ctx.meta.get(STORE_KEY) or os.environ.get(STORE_ENV_VAR) or default_store_url()
    return str(url)


def _local_path(url: str) -> str | None:
    """The file or folder a store URL names, or None (memory, or not a URL we know)."""
    if "://" not in url:
        return os.path.expanduser(url)
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return rest[1:]
    if scheme.lower() == "file":
        # Imported here: urllib.request pulls in http.client, email and ssl (~20 ms).
        from urllib.request import url2pathname

        return url2pathname(urlsplit(url).path) or None
    return None


def _existing(ctx: click.Context) -> str:
    url = store_url(ctx)
    path = _local_path(url)
    if path is not None and not os.path.exists(path):
        raise CommandError(
            f"no store at {path}; run `decisiontrace demo` to fill one, or pass --store / "
            f"set {STORE_ENV_VAR} to an existing store"
        )
    return url


def open_for_reading(ctx: click.Context) -> RunStore:
    """The store to read: never created, changed or upgraded (SQLite opened ``mode=ro``)."""
    return open_store(_existing(ctx), read_only=True)


def open_existing(ctx: click.Context) -> RunStore:
    """A store that exists, to write into (``evaluate`` stores judgements); never creates one."""
    return open_store(_existing(ctx))


def short_id(run_id: str) -> str:
    """The part of a run id that tells runs apart: the random hex at its end
    (``run_support_20260510_140307_7eb34ba9`` -> ``7eb34ba9``), else the whole id."""
    tail = run_id.rsplit("_", 1)[-1]
    return tail if len(tail) >= 6 and all(c in "0123456789abcdef" for c in tail) else run_id


def resolve_run_id(store: RunStore, given: str) -> str:
    """The run id ``given`` names, git-style: the id itself, or a unique prefix of the id
    or of its short id (the hex at its end).

    Raises:
        CommandError: no run matches, or several do (their ids are listed); exit 2.
    """
    if not given:
        raise CommandError("a run id is empty; list run ids with `decisiontrace runs list`")
    if store.load_record(given) is not None:
        return given
    matches = [
        run_id
        for run_id in (summary.run_id for summary in store.list_runs())
        if run_id.startswith(given) or short_id(run_id).startswith(given)
    ]
    if not matches:
        raise CommandError(
            f"no run {given!r} in {store.url}; list run ids with `decisiontrace runs list`"
        )
    if len(matches) > 1:
        shown = ", ".join(sorted(matches)[:10]) + (", …" if len(matches) > 10 else "")
        raise CommandError(
            f"run id {given!r} is ambiguous: {len(matches)} runs match ({shown}); "
            "give more of the id"
        )
    return matches[0]


def load_run(store: RunStore, run_id: str) -> Run:
    """The run ``run_id`` names (the id, or a unique prefix of it or of its short id);
    a CommandError naming the store when there is none, or the candidates when the
    prefix is ambiguous."""
    resolved = resolve_run_id(store, run_id)
    run = store.load_run(resolved)
    if run is None:
        raise CommandError(
            f"no run {run_id!r} in {store.url}; list run ids with `decisiontrace runs list`"
        )
    return run


def load_runs(
    store: RunStore,
    goal: str | None,
    since: datetime | None,
    limit: int | None,
    *,
    status: str | None = None,
    node: str | None = None,
) -> Iterator[Run]:
    """The stored runs that match, newest first."""
    for summary in store.list_runs(
        goal_id=goal, status=status, since=since, limit=limit, node_id=node
    ):
        run = store.load_run(summary.run_id)
        if run is not None:
            yield run
