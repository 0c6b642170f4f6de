"""The ingest tier of collector-config/: agents -> collector routing by trace id -> several
``decisiontrace serve`` replicas -> PostgreSQL, and -> Jaeger and Tempo.

No containers run here; the files are checked against each other and against the
``serve`` command they start.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from decisiontrace.cli.serve import serve

CONFIG_DIR = Path(__file__).resolve().parents[2] / "collector-config"
TIER = CONFIG_DIR / "otel-collector-ingest.yaml"
COMPOSE = CONFIG_DIR / "docker-compose.ingest.yml"
BASE_COMPOSE = CONFIG_DIR / "docker-compose.yml"
README = CONFIG_DIR / "README.md"


def _yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _replicas() -> dict[str, dict[str, Any]]:
    services = _yaml(COMPOSE)["services"]
    return {name: body for name, body in services.items() if name.startswith("ingest-")}


def test_the_collector_routes_each_trace_to_one_replica() -> None:
    config = _yaml(TIER)
    balancer = config["exporters"]["load_balancing"]
    assert balancer["routing_key"] == "traceID"
    hostnames = balancer["resolver"]["static"]["hostnames"]
    assert len(hostnames) >= 2
    assert {host.split(":")[0] for host in hostnames} == set(_replicas())
    assert all(host.endswith(":4317") for host in hostnames)
    otlp = balancer["protocol"]["otlp"]
    assert otlp["retry_on_failure"]["enabled"] is True  # replicas answer UNAVAILABLE
    assert otlp["sending_queue"]["enabled"] is True


def test_every_span_also_goes_to_jaeger_and_tempo() -> None:
    config = _yaml(TIER)
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    assert exporters[0] == "load_balancing"
    base_services = set(_yaml(BASE_COMPOSE)["services"])
    for exporter_id in exporters[1:]:
        host = config["exporters"][exporter_id]["endpoint"].split(":")[0]
        assert host in {"jaeger", "tempo"} and host in base_services


def test_replicas_serve_otlp_into_the_shared_postgresql_store() -> None:
    services = _yaml(COMPOSE)["services"]
    assert "postgres" in services
    for name, body in _replicas().items():
        command = body["command"]
        assert command[:2] == ["sh", "-c"], name
        words = shlex.split(command[2])
        serve_at = words.index("serve")
        assert words[serve_at - 1] == "decisiontrace"
        arguments = words[serve_at + 1 :]
        # Every flag the replicas pass exists on the command, with a value.
        flags = {opt for param in serve.params for opt in getattr(param, "opts", [])}
        given = dict(zip(arguments[::2], arguments[1::2], strict=True))
        assert set(given) <= flags, set(given) - flags
        assert given["--store"].startswith("postgresql://") and "@postgres:" in given["--store"]
        # Inside a container the service must listen beyond 127.0.0.1 (its default).
        assert given["--grpc"] == "0.0.0.0:4317"
        assert body["stop_grace_period"]  # SIGTERM: it stores what it holds first


def test_the_readme_explains_why_routing_by_trace_id_matters() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A tier of ingest replicas") :]
    assert "otel-collector-ingest.yaml" in section
    assert "trace id" in section and "one replica" in section
