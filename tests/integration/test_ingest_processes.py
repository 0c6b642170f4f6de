"""The ingest service as a process, fed by agent processes that call each other over HTTP.

Every part is real: ``decisiontrace serve`` in a subprocess on 127.0.0.1 with a SQLite
store, three agent processes (tests/integration/fleet_agent.py) propagating the trace
context over HTTP and exporting with the SDK's OTLP exporters (gRPC and HTTP), signals
sent to real pids.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.cli.app import main
from decisiontrace.export import _otlp_json
from decisiontrace.ingest import IngestService
from decisiontrace.models import Run
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import open_store
from decisiontrace.tracking import propagation
from tests.stores.test_journal import JournalTable

AGENT = Path(__file__).with_name("fleet_agent.py")
_LISTENING = re.compile(r"OTLP/gRPC on [\d.]+:(\d+), OTLP/HTTP on [\d.]+:(\d+)")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DECISIONTRACE_STORE", None)
    env.update(extra)
    return env


@dataclass
class Ingest:
    store_url: str
    grpc_port: int = 0
    http_port: int = 0
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)
    reader: threading.Thread = field(default_factory=threading.Thread)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "decisiontrace", "serve", "--store", self.store_url,
             "--grpc", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}"],
            stderr=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        assert self.process.stderr is not None
        found = None
        for _ in range(100):  # what it took back from the journal is logged first
            line = self.process.stderr.readline()
            self.log.append(line)
            found = _LISTENING.search(line)
            if found or not line:
                break
        assert found, f"the service did not start: {''.join(self.log)!r}"
        self.grpc_port, self.http_port = int(found.group(1)), int(found.group(2))
        stderr = self.process.stderr
        self.reader = threading.Thread(target=lambda: self.log.extend(stderr), daemon=True)
        self.reader.start()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(30)
        self.reader.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


def _serving(url: str) -> Iterator[Ingest]:
    service = Ingest(url)
    service.start()
    yield service
    if service.process is not None and service.process.poll() is None:
        service.stop(signal.SIGKILL)


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    """The service on a SQLite store."""
    yield from _serving(f"sqlite:///{tmp_path / 'runs.db'}")


@pytest.fixture(params=["sqlite", "postgresql"])
def ingest_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ingest]:
    """The service on SQLite, and on PostgreSQL (a schema of the test's own) when
    DECISIONTRACE_TEST_POSTGRES_URL names a server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from _serving(url)


@dataclass
class Agent:
    process: subprocess.Popen[str]
    port: int = 0
    lines: list[tuple[float, str]] = field(default_factory=list)
    reader: threading.Thread | None = None


def _agent(role: str, service: str, *args: str, timeout_env: str = "30") -> Agent:
    process = subprocess.Popen(
        [sys.executable, str(AGENT), role, service, *args],
        stdout=subprocess.PIPE, text=True,
        env=_env(OTEL_EXPORTER_OTLP_TIMEOUT=timeout_env, OTEL_PROPAGATORS="tracecontext,baggage"),
    )  # fmt: skip
    agent = Agent(process)
    assert process.stdout is not None
    if role == "server":
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        agent.port = int(line.split()[1])
    else:
        stdout = process.stdout

        def read() -> None:
            for line in stdout:
                agent.lines.append((time.monotonic(), line.strip()))

        agent.reader = threading.Thread(target=read, daemon=True)
        agent.reader.start()
    return agent


def _fleet(ingest: Ingest, runs: int, pause: float, *more: str) -> tuple[Agent, Agent, Agent]:
    """tool (HTTP export) <- planner (gRPC) <- front, the client (gRPC)."""
    tool = _agent("server", "tool", "--otlp", f"http://127.0.0.1:{ingest.http_port}",
                  "--protocol", "http")  # fmt: skip
    planner = _agent("server", "planner", "--otlp", f"127.0.0.1:{ingest.grpc_port}",
                     "--downstream", f"http://127.0.0.1:{tool.port}/")  # fmt: skip
    front = _agent("client", "front", "--otlp", f"127.0.0.1:{ingest.grpc_port}",
                   "--downstream", f"http://127.0.0.1:{planner.port}/",
                   "--runs", str(runs), "--pause", str(pause), *more)  # fmt: skip
    return tool, planner, front


def _finish(*agents: Agent) -> None:
    for agent in agents:
        if agent.port:
            agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(60) == 0
        if agent.reader is not None:
            agent.reader.join(10)
        assert agent.process.stdout is not None
        agent.process.stdout.close()


def _run_ids(agent: Agent) -> list[tuple[float, str]]:
    """(when the run ended, by the agent's clock; run id) of each run the client made."""
    return [
        (float(line.split()[2]), line.split()[1])
        for _, line in agent.lines
        if line.startswith("RUN ")
    ]


def _assert_three_processes(run: Run | None) -> None:
    assert run is not None
    assert run.status.value == "completed"
    made_by = [getattr(d, "service", None) for d in run.decisions]
    assert made_by == [None, "planner", "tool"], made_by  # in time order
    assert [d.node_id for d in run.decisions] == ["front", "planner-node", "tool-node"]
    assert [d.chosen_option_id for d in run.decisions] == ["planner", "downstream", "local"]
    assert run.metrics.total_decisions == 3 and run.metrics.successful_decisions == 3


def test_a_run_made_in_three_processes_is_one_run_through_the_ingest_service(
    ingest_any: Ingest,
) -> None:
    ingest = ingest_any
    tool, planner, front = _fleet(ingest, runs=3, pause=0.0)
    _finish(front, planner, tool)
    assert ingest.stop() == 0, "".join(ingest.log)
    run_ids = [run_id for _, run_id in _run_ids(front)]
    assert len(run_ids) == 3
    with open_store(ingest.store_url) as store:
        for run_id in run_ids:
            _assert_three_processes(store.load_run(run_id))
        assert len(store.list_runs()) == 3  # one run each, whatever the fragments
    shown = CliRunner().invoke(main, ["--store", ingest.store_url, "runs", "show", run_ids[0]])
    assert shown.exit_code == 0, shown.output
    assert "@planner planner picks a route" in shown.stdout
    assert "@tool tool picks a route" in shown.stdout
    assert "stopped;" in "".join(ingest.log)


def _complete(run: Run | None) -> bool:
    try:
        _assert_three_processes(run)
    except AssertionError:
        return False
    return True


def test_runs_complete_once_retries_land_after_the_ingest_process_is_killed(
    ingest: Ingest, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    tool, planner, front = _fleet(ingest, 1000, 0.1, "--until", str(stop))
    deadline = time.monotonic() + 60
    settled: list[str] = []
    with open_store(ingest.store_url) as store:  # the first runs are written, whole
        while len(settled) < 5 and time.monotonic() < deadline:
            settled = [r for _, r in _run_ids(front)[:5] if _complete(store.load_run(r))]
            time.sleep(0.1)
    assert len(settled) == 5, "the first runs were not stored in time"
    assert ingest.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.time()
    time.sleep(1.5)  # the agents keep running and exporting: their exporters retry
    ingest.start()  # the same ports and store
    restarted_at = time.time()
    deadline = time.monotonic() + 60  # a few runs made after the restart, then stop
    while time.monotonic() < deadline:
        if len([at for at, _ in _run_ids(front) if at > restarted_at]) >= 5:
            break
        time.sleep(0.05)
    stop.touch()
    _finish(front, planner, tool)
    assert ingest.stop() == 0, "".join(ingest.log)
    runs = _run_ids(front)
    # Runs whose spans were all exported while the service was down reached it through
    # the exporters' retries, and runs after it, the new process. What the killed
    # process had answered, it had journaled or written: the runs in flight at the
    # kill are whole too (docs/ingest.md).
    retried = [run_id for at, run_id in runs if killed_at + 0.3 <= at <= restarted_at]
    after = [run_id for at, run_id in runs if at > restarted_at]
    assert retried and after
    with open_store(ingest.store_url) as store:
        for _, run_id in runs:
            _assert_three_processes(store.load_run(run_id))


def _post_spans(ingest: Ingest, spans: list[ReadableSpan]) -> int:
    """OTLP/JSON of ``spans`` posted to the service; the answer's status."""
    connection = http.client.HTTPConnection("127.0.0.1", ingest.http_port, timeout=30)
    try:
        connection.request("POST", "/v1/traces", _otlp_json.request_line(spans).encode(),
                           {"Content-Type": "application/json"})  # fmt: skip
        return connection.getresponse().status
    finally:
        connection.close()


def _exporting(service: str) -> tuple[TracerProvider, InMemorySpanExporter, dt.DecisionTracker]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter, dt.DecisionTracker(service, tracer_provider=provider)


def _run_with_a_fragment(*intents: str) -> tuple[str, list[ReadableSpan], list[ReadableSpan]]:
    """A run of "front" with a decision per intent, and a decision "tool" made in it as
    another process would (a fragment): the run's id, front's spans, tool's spans."""
    _, front_spans, front = _exporting("front")
    _, tool_spans, tool = _exporting("tool")

    @dt.decision("Look it up", options=["kb", "web"], tracker=tool)
    def look_up() -> str:
        return "kb"

    headers: dict[str, str] = {}
    with front.run("g") as run:
        for intent in intents:
            front.quick_decision(intent=intent, action="a", reasoning="r")
        propagation.inject(headers)
    with propagation.attached(headers):
        look_up()
    spans = list(front_spans.get_finished_spans())
    return run.run_id, spans, list(tool_spans.get_finished_spans())


def _completed_decisions(ingest: Ingest, run_id: str) -> list[tuple[str, str | None]]:
    """(intent, service) of each decision of a stored run, which must be completed."""
    with open_store(ingest.store_url) as store:
        stored = store.load_run(run_id)
    assert stored is not None and stored.status.value == "completed", stored
    return [(d.intent, getattr(d, "service", None)) for d in stored.decisions]


def _answered_then_killed(ingest: Ingest) -> tuple[str, list[ReadableSpan]]:
    """A run's decisions and a fragment sent to the service and answered, then the
    service killed with SIGKILL: the run's id and its run span, not sent yet."""
    run_id, spans, tool_spans = _run_with_a_fragment("held")
    run_span = [s for s in spans if (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_RUN]
    decisions = [s for s in spans if s not in run_span]
    # Answered: the run's decisions wait for its span, the fragment for nothing.
    assert _post_spans(ingest, decisions + tool_spans) == 200
    assert ingest.stop(signal.SIGKILL) == -signal.SIGKILL
    return run_id, run_span


def test_spans_answered_before_a_sigkill_complete_their_run_after_the_restart(
    ingest_any: Ingest,
) -> None:
    ingest = ingest_any
    run_id, run_span = _answered_then_killed(ingest)
    ingest.start()  # the same store
    assert _post_spans(ingest, run_span) == 200
    assert ingest.stop() == 0, "".join(ingest.log)
    assert _completed_decisions(ingest, run_id) == [
        ("held", None),
        ("Look it up", "tool"),
    ]


def test_a_service_restarted_with_the_pid_of_its_killed_predecessor_takes_back_its_spans(
    ingest_any: Ingest,
) -> None:
    # A container's `serve` is pid 1 after every restart. Played here by this process:
    # the killed service's journal entries are given this process's pid, and a service
    # started here must take them back rather than take them for its own.
    ingest = ingest_any
    run_id, run_span = _answered_then_killed(ingest)
    journal = JournalTable(ingest.store_url)
    assert ingest.process is not None
    assert [pid for pid, _ in journal.writers()] == [ingest.process.pid]
    journal.execute(f"UPDATE {{t}}journal SET pid = {os.getpid()}")

    restarted = IngestService(ingest.store_url, grpc_address=None, http_address="127.0.0.1:0")
    restarted.start()
    try:
        assert (
            _post_spans(Ingest(ingest.store_url, http_port=restarted.http_port or 0), run_span)
            == 200
        )
    finally:
        restarted.stop(30)
    assert _completed_decisions(ingest, run_id) == [("held", None), ("Look it up", "tool")]


def _export(ingest: Ingest, spans: list[ReadableSpan]) -> SpanExportResult:
    """``spans`` sent to the service by the SDK's OTLP/HTTP exporter."""
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{ingest.http_port}/v1/traces")
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def _made_run(late: str) -> tuple[str, list[ReadableSpan], list[ReadableSpan]]:
    """A run with a fragment, in what an agent exporting in batches sends before a
    restart and after it: the ``late`` part ("run span": the second decision and the
    run span; "decision": the second decision alone)."""
    run_id, spans, tool_spans = _run_with_a_fragment("first", "second")
    rest = [
        s for s in spans
        if (s.attributes or {}).get(sc.DECISION_INTENT) == "second"
        or (late == "run span" and (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_RUN)
    ]  # fmt: skip
    first = [s for s in spans if s not in rest]
    return run_id, first + tool_spans, rest


@pytest.mark.parametrize("late", ["run span", "decision"])
def test_a_rolling_restart_loses_no_decision(ingest_any: Ingest, late: str) -> None:
    # SIGTERM with a run whose run span has not arrived (or that waits for a late
    # decision): the service stores what is complete and leaves the rest in the
    # journal; its successor completes the run when the rest arrives.
    ingest = ingest_any
    run_id, first, rest = _made_run(late)
    assert _export(ingest, first) == SpanExportResult.SUCCESS
    assert ingest.stop() == 0, "".join(ingest.log)
    with open_store(ingest.store_url) as store:
        held = store.load_run(run_id)
    assert held is None or held.status.value != "stuck"
    ingest.start()  # the same store
    assert _export(ingest, rest) == SpanExportResult.SUCCESS
    assert ingest.stop() == 0, "".join(ingest.log)
    assert _completed_decisions(ingest, run_id) == [
        ("first", None),
        ("second", None),
        ("Look it up", "tool"),
    ]
    log = "".join(ingest.log)
    assert "taken back from the journal" in log, log


def test_what_a_stopped_service_left_in_the_journal_is_stored_as_stuck_by_a_later_processor(
    ingest_any: Ingest,
) -> None:
    # No service on the store again: any processor journaling on it stores the run.
    ingest = ingest_any
    run_id, first, _ = _made_run("run span")
    assert _export(ingest, first) == SpanExportResult.SUCCESS
    assert ingest.stop() == 0, "".join(ingest.log)
    with open_store(ingest.store_url) as store:
        held = store.load_run(run_id)
    assert held is None or held.status.value != "stuck"  # left in the journal
    processor = dt.RunRecordProcessor(ingest.store_url, journal=True, handle_sigterm=False)
    assert processor.force_flush()
    stored = processor.store.load_run(run_id)
    processor.shutdown()
    assert stored is not None
    assert stored.status.value == "stuck"
    assert [d.intent for d in stored.decisions] == ["first", "Look it up"]
