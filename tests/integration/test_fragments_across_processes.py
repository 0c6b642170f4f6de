"""A run whose decisions are made in three processes is one run in a shared store.

Real processes, each with its own SDK pipeline and processor, on one store: SQLite
shared by the processes of this host, and PostgreSQL as hosts would share it. The
agent's process starts the run and hands its context (traceparent and baggage) to two
workers over HTTP on 127.0.0.1, as a tool server would receive it; each worker records
its decisions and a problem into the agent's run and stores them as its fragment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from decisiontrace import RunStatus
from decisiontrace.stores import open_store

WORKER = """
import http.server, json, os, sys, threading
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
import decisiontrace as dt
from decisiontrace import propagation
from decisiontrace.stores import open_store

url, service = sys.argv[1], sys.argv[2]
store = open_store(url)
processor = dt.RunRecordProcessor(store, flush_interval=0.01, handle_sigterm=False)
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(processor)
tracker = dt.DecisionTracker(service, tracer_provider=provider)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # HTTP header names are case-insensitive; urllib sends "Traceparent".
        with propagation.attached({k.lower(): v for k, v in self.headers.items()}):
            tracker.set_node(f"{service}-node")
            decision = tracker.decide(intent=f"{service} picks", options=[{"id": "x"}],
                                      chosen="x", reasoning=f"{service} knows")
            tracker.record_outcome(decision_id=decision, success=True, tokens_used=10)
            tracker.report_problem(severity="warning", description=f"{service} was slow")
        processor.force_flush(10_000)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"done")
    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # until the test closes stdin
server.shutdown()
provider.shutdown()
"""

AGENT = """
import json, sys, urllib.request
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
import decisiontrace as dt
from decisiontrace import propagation
from decisiontrace.stores import open_store

url, ports = sys.argv[1], json.loads(sys.argv[2])
processor = dt.RunRecordProcessor(open_store(url), flush_interval=0.01, handle_sigterm=False)
provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
provider.add_span_processor(processor)
tracker = dt.DecisionTracker("agent", tracer_provider=provider)
with tracker.run("support", "answer the ticket", {"ticket": "T-1"}) as scope:
    tracker.set_node("planner")
    first = tracker.decide(intent="plan", options=[{"id": "ask"}], chosen="ask",
                           reasoning="need tools")
    tracker.record_outcome(decision_id=first, success=True, tokens_used=1)
    for port in ports:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{}",
                                         headers=propagation.inject({}))
        assert urllib.request.urlopen(request, timeout=30).read() == b"done"
    last = tracker.decide(intent="answer", options=[{"id": "reply"}], chosen="reply",
                          reasoning="tools answered")
    tracker.record_outcome(decision_id=last, success=True, tokens_used=2)
provider.shutdown()
print(scope.run_id, flush=True)
"""


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_run_made_in_three_processes_is_one_run(store_url: str, tmp_path: Path) -> None:
    worker_script = _script(tmp_path, "worker.py", WORKER)
    workers = [
        subprocess.Popen(
            [sys.executable, str(worker_script), store_url, service],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for service in ("tools", "search")
    ]
    try:
        ports = []
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.strip().isdigit(), worker.communicate(timeout=10)[1]
            ports.append(int(line))
        agent = subprocess.run(
            [sys.executable, str(_script(tmp_path, "agent.py", AGENT)), store_url,
             json.dumps(ports)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert agent.returncode == 0, agent.stderr
        run_id = agent.stdout.strip().splitlines()[-1]
    finally:
        for worker in workers:
            _, stderr = worker.communicate("", timeout=60)
            assert worker.returncode == 0, stderr

    store = open_store(store_url)
    try:
        (summary,) = store.list_runs()  # one run, counted once
        assert summary.run_id == run_id
        run = store.load_run(run_id)
        assert run is not None
        assert run.status == RunStatus.COMPLETED
        assert [d.intent for d in run.decisions] == [
            "plan",
            "tools picks",
            "search picks",
            "answer",
        ]
        services = [d.model_dump().get("service") for d in run.decisions]
        assert services == [None, "tools", "search", None]
        assert run.model_dump()["services"] == ["tools", "search"]
        assert len({d.id for d in run.decisions}) == 4
        assert run.metrics.total_decisions == 4 and run.metrics.successful_decisions == 4
        assert run.metrics.total_tokens == 1 + 10 + 10 + 2
        assert sorted(p.description for p in run.problems) == [
            "search was slow",
            "tools was slow",
        ]
        assert summary.decision_count == 4 and summary.problem_count == 2
        assert [s.run_id for s in store.list_runs(node_id="search-node")] == [run_id]
    finally:
        store.close()
