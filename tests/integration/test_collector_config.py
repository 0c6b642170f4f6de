"""Static checks of the collector, Tempo, Grafana and compose files in ``collector-config/``.

Docker does not run where these tests run, so no container is started: the files are
parsed and checked for the mistakes that would otherwise only show when someone runs
``docker compose up`` (a pipeline naming an undefined component, a definition nobody
uses, a sampling policy keyed on an attribute name the tracker never writes, a mount
of a file that does not exist, Grafana pointed at the wrong port).
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from decisiontrace.models import RunStatus
from decisiontrace.spanmodel import semconv

CONFIG_DIR = Path(__file__).resolve().parents[2] / "collector-config"
COMPOSE_FILE = CONFIG_DIR / "docker-compose.yml"
TAIL_SAMPLING_COMPOSE_FILE = CONFIG_DIR / "docker-compose.tail-sampling.yml"
TEMPO_CONFIG = CONFIG_DIR / "tempo.yaml"
DATASOURCES = CONFIG_DIR / "grafana" / "provisioning" / "datasources" / "tempo.yaml"
README = CONFIG_DIR / "README.md"

EXPECTED_COLLECTOR_CONFIGS = frozenset(
    {
        "otel-collector-default.yaml",
        "otel-collector-tail-sampling.yaml",
        "otel-collector-loadbalancer.yaml",
        "otel-collector-sampler.yaml",
        "otel-collector-ingest.yaml",
    }
)
COLLECTOR_CONFIGS = sorted(CONFIG_DIR.glob("otel-collector-*.yaml"))
TAIL_SAMPLING_CONFIGS = ("otel-collector-tail-sampling.yaml", "otel-collector-sampler.yaml")
DEFAULT_CONFIG = "otel-collector-default.yaml"
LOADBALANCER_CONFIG = "otel-collector-loadbalancer.yaml"
SAMPLER_CONFIG = "otel-collector-sampler.yaml"
PIPELINE_SECTIONS = ("receivers", "processors", "exporters")
REQUIRED_SERVICES = frozenset({"collector", "jaeger", "tempo", "grafana"})
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib"
#: Component types the collector renamed to lower_snake_case; the old names still load
#: as deprecated aliases that log a warning at every start (core v0.144, contrib 2026).
DEPRECATED_COMPONENT_TYPES = {
    "otlp": "otlp_grpc",  # exporter only: the `otlp` receiver keeps its name
    "otlphttp": "otlp_http",
    "loadbalancing": "load_balancing",
}
#: Top-level Tempo blocks that Tempo 3.0 removed with the ingester/compactor design.
TEMPO_2_BLOCKS = frozenset({"ingester", "ingester_client", "compactor", "metrics_generator_client"})

#: Every name the package may write onto a span, from the one module that defines them.
SEMCONV_NAMES = frozenset(
    value for name, value in vars(semconv).items() if name.isupper() and isinstance(value, str)
)
#: A ``decisiontrace.*`` attribute or event name inside any string (the last character
#: may not be a dot, so a name ending a sentence is read without it).
DECISIONTRACE_NAME = re.compile(r"\bdecisiontrace\.[A-Za-z0-9_.]*[A-Za-z0-9_]")
#: Attribute names in TraceQL (``span.x``, ``event.x``, ``resource.x``) and in Jaeger
#: tag searches (``x=value``).
README_ATTRIBUTE = re.compile(
    r"(?:\b(?:span|event|resource)\.(decisiontrace\.[A-Za-z0-9_.]*[A-Za-z0-9_]))"
    r"|(?:\b(decisiontrace\.[A-Za-z0-9_.]*[A-Za-z0-9_])=)"
)
#: Policy types that take no configuration block of their own.
POLICY_TYPES_WITHOUT_BLOCK = frozenset({"always_sample"})
#: Keys under which combining policies nest their sub-policies.
SUB_POLICY_KEYS = ("and_sub_policy", "composite_sub_policy", "drop_sub_policy")
#: Decisions slower than this are kept (2 s, the threshold the README queries use).
SLOW_DECISION_NANOS = 2_000_000_000


# --- loading ---------------------------------------------------------------------------


@functools.cache
def load_yaml(path: Path) -> Any:
    """Parse one YAML file once per test session (tests never mutate the result)."""
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def collector_config(name: str) -> dict[str, Any]:
    """One collector config by file name."""
    config = load_yaml(CONFIG_DIR / name)
    assert isinstance(config, dict), f"{name}: top level is not a mapping"
    return config


def compose_services() -> dict[str, dict[str, Any]]:
    """The ``services`` mapping of docker-compose.yml."""
    services = load_yaml(COMPOSE_FILE)["services"]
    assert isinstance(services, dict)
    return services


# --- collector config helpers ------------------------------------------------------------


def component_type(component_id: str) -> str:
    """``otlp/jaeger`` -> ``otlp``: a component id is ``type`` or ``type/name``."""
    return component_id.split("/", 1)[0]


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """The pipelines under ``service``."""
    return dict((config.get("service") or {}).get("pipelines") or {})


def defined(config: dict[str, Any], section: str) -> set[str]:
    """Component ids defined in a top-level section (a null body still defines the id)."""
    return set(config.get(section) or {})


def components_of_type(config: dict[str, Any], section: str, type_: str) -> dict[str, Any]:
    """Definitions in ``section`` whose id has type ``type_``, with their bodies."""
    return {
        component_id: body or {}
        for component_id, body in (config.get(section) or {}).items()
        if component_type(component_id) == type_
    }


def iter_strings(node: Any) -> Iterator[str]:
    """Every string key and value in a parsed YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from iter_strings(key)
            yield from iter_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_strings(item)


def host_and_port(address: str) -> tuple[str, int]:
    """``tempo:4317`` or ``http://tempo:4317`` -> ``("tempo", 4317)``."""
    parsed = urlsplit(address if "://" in address else f"//{address}")
    assert parsed.hostname is not None, f"no host in {address!r}"
    assert parsed.port is not None, f"no port in {address!r}"
    return parsed.hostname, parsed.port


def seconds(duration: str) -> float:
    """A collector duration such as ``5s``, ``2m`` or ``500ms`` in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration).strip())
    assert match, f"not a duration: {duration!r}"
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def flatten_policies(policies: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Policies and, recursively, the sub-policies of and/composite/drop policies."""
    for policy in policies:
        yield policy
        body = policy.get(policy.get("type", "")) or {}
        for key in SUB_POLICY_KEYS:
            yield from flatten_policies(body.get(key) or [])


def tail_sampling_policies(config: dict[str, Any]) -> list[dict[str, Any]]:
    """All policies of all tail_sampling processors in a config, flattened."""
    processors = components_of_type(config, "processors", "tail_sampling")
    assert processors, "no tail_sampling processor defined"
    policies: list[dict[str, Any]] = []
    for body in processors.values():
        policies.extend(flatten_policies(body.get("policies") or []))
    return policies


def policies_of_type(config: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    """The configuration blocks of every policy of one type."""
    return [p.get(type_) or {} for p in tail_sampling_policies(config) if p.get("type") == type_]


def ottl_conditions(config: dict[str, Any], context: str) -> list[str]:
    """Every OTTL condition of ``ottl_condition`` policies in one context (span/spanevent)."""
    return [
        condition
        for block in policies_of_type(config, "ottl_condition")
        for condition in block.get(context) or []
    ]


def otlp_receiver_ports(config: dict[str, Any], protocol: str) -> set[int]:
    """Ports the config's OTLP receivers listen on for one protocol."""
    ports = set()
    for body in components_of_type(config, "receivers", "otlp").values():
        endpoint = ((body.get("protocols") or {}).get(protocol) or {}).get("endpoint")
        if endpoint:
            ports.add(host_and_port(endpoint)[1])
    return ports


# --- compose helpers -------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path for a service's bind mounts (short or long syntax)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "bind") == "bind":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target, *_mode = volume.split(":")
        if source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def command_flag(service: dict[str, Any], flag: str) -> str | None:
    """The value of ``flag`` (as ``flag=value`` or ``flag value``) in a service's command."""
    command = service.get("command") or []
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    for index, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
    return None


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs a service publishes."""
    pairs = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        if len(parts) >= 2:
            pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, from either compose syntax."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def mounted_host_file(service: dict[str, Any], container_path: str) -> Path:
    """The host file mounted at ``container_path``, resolved against collector-config/."""
    mounts = bind_mounts(service)
    assert container_path in mounts, f"{container_path} is not a mounted path ({mounts})"
    return (CONFIG_DIR / mounts[container_path]).resolve()


def collector_services() -> dict[str, dict[str, Any]]:
    """Compose services running the collector image."""
    return {
        name: service
        for name, service in compose_services().items()
        if str(service.get("image", "")).startswith(COLLECTOR_IMAGE)
    }


def service_config_file(service: dict[str, Any]) -> Path:
    """The host file a collector service loads through ``--config``."""
    config_path = command_flag(service, "--config")
    assert config_path, "collector started without --config"
    return mounted_host_file(service, config_path)


# --- every collector config ----------------------------------------------------------------


def test_expected_collector_configs_exist() -> None:
    assert {path.name for path in COLLECTOR_CONFIGS} == EXPECTED_COLLECTOR_CONFIGS


@pytest.fixture(params=COLLECTOR_CONFIGS, ids=lambda path: path.name)
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return collector_config(request.param.name)


def test_config_has_pipelines(config: dict[str, Any]) -> None:
    assert pipelines(config), "service.pipelines is missing or empty"


def test_metrics_from_configure_have_a_pipeline(config: dict[str, Any]) -> None:
    # decisiontrace.configure() sends OTLP metrics to the same endpoint as traces: a
    # collector without a metrics pipeline would refuse them.
    metrics = config["service"]["pipelines"].get("metrics")
    assert metrics is not None
    assert "otlp" in [r.split("/")[0] for r in metrics["receivers"]]


def test_evaluation_events_have_a_logs_pipeline(config: dict[str, Any]) -> None:
    # Judgements (gen_ai.evaluation.result log records) go to the same OTLP endpoint as
    # traces: a collector without a logs pipeline would refuse them.
    logs = config["service"]["pipelines"].get("logs")
    assert logs is not None
    assert "otlp" in [r.split("/")[0] for r in logs["receivers"]]


def test_every_referenced_component_is_defined(config: dict[str, Any]) -> None:
    for pipeline_id, pipeline in pipelines(config).items():
        for section in PIPELINE_SECTIONS:
            missing = set(pipeline.get(section) or []) - defined(config, section)
            assert not missing, f"pipeline {pipeline_id} uses undefined {section}: {missing}"
    extensions = set((config.get("service") or {}).get("extensions") or [])
    missing_extensions = extensions - defined(config, "extensions")
    assert not missing_extensions, f"service.extensions undefined: {missing_extensions}"


def test_every_defined_component_is_used(config: dict[str, Any]) -> None:
    # The collector only warns about unused definitions; here they are mistakes
    # (a policy or exporter someone believes is active but is not).
    for section in PIPELINE_SECTIONS:
        used = {cid for p in pipelines(config).values() for cid in p.get(section) or []}
        unused = defined(config, section) - used
        assert not unused, f"{section} defined but in no pipeline: {unused}"
    used_extensions = set((config.get("service") or {}).get("extensions") or [])
    unused_extensions = defined(config, "extensions") - used_extensions
    assert not unused_extensions, f"extensions not in service.extensions: {unused_extensions}"


def test_pipelines_have_a_receiver_and_an_exporter(config: dict[str, Any]) -> None:
    for pipeline_id, pipeline in pipelines(config).items():
        assert pipeline.get("receivers"), f"pipeline {pipeline_id} has no receiver"
        assert pipeline.get("exporters"), f"pipeline {pipeline_id} has no exporter"


def test_processor_order(config: dict[str, Any]) -> None:
    for pipeline_id, pipeline in pipelines(config).items():
        types = [component_type(cid) for cid in pipeline.get("processors") or []]
        # memory_limiter first, so refusals reach the receiver before anything buffers.
        assert types, f"pipeline {pipeline_id} has no processors (memory_limiter at least)"
        assert types[0] == "memory_limiter", (
            f"pipeline {pipeline_id}: memory_limiter must be the first processor, got {types}"
        )
        if "tail_sampling" in types and "batch" in types:
            assert types.index("batch") > types.index("tail_sampling"), (
                f"pipeline {pipeline_id}: batch must come after tail_sampling, got {types}"
            )


def test_memory_limiter_is_configured(config: dict[str, Any]) -> None:
    for body in components_of_type(config, "processors", "memory_limiter").values():
        # Without check_interval the limiter never measures anything.
        assert body.get("check_interval"), "memory_limiter.check_interval is not set"
        assert body.get("limit_percentage") or body.get("limit_mib"), "memory_limiter has no limit"


def test_otlp_receivers_listen_on_all_interfaces(config: dict[str, Any]) -> None:
    # The collector defaults to localhost since v0.104: unreachable from other containers.
    receivers = components_of_type(config, "receivers", "otlp")
    assert receivers, "no otlp receiver"
    for receiver_id, body in receivers.items():
        protocols = body.get("protocols") or {}
        assert "grpc" in protocols, f"{receiver_id} has no grpc protocol"
        for protocol, settings in protocols.items():
            endpoint = (settings or {}).get("endpoint", "")
            assert endpoint.startswith("0.0.0.0:"), (
                f"{receiver_id}.{protocol} endpoint {endpoint!r} does not bind 0.0.0.0"
            )


def test_decisiontrace_names_exist_in_semconv(config: dict[str, Any]) -> None:
    referenced = {
        name for text in iter_strings(config) for name in DECISIONTRACE_NAME.findall(text)
    }
    unknown = referenced - SEMCONV_NAMES
    assert not unknown, f"names not defined in decisiontrace.semconv: {unknown}"


def test_otlp_exporters_point_at_compose_services(config: dict[str, Any]) -> None:
    services = compose_services()
    for exporter_id, body in components_of_type(config, "exporters", "otlp_grpc").items():
        host, _port = host_and_port(body["endpoint"])
        assert host in services, f"{exporter_id} sends to {host!r}, not a compose service"
        # Plain gRPC inside the compose network: without this the exporter tries TLS.
        assert (body.get("tls") or {}).get("insecure") is True, f"{exporter_id}: tls.insecure"


def test_component_types_use_current_names(config: dict[str, Any]) -> None:
    # A deprecated alias still works but logs a warning at every collector start, and
    # will go away: the configs use the names the collector documents today.
    for section in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for component_id in config.get(section) or {}:
            type_ = component_type(component_id)
            if section == "receivers" and type_ == "otlp":
                continue  # the OTLP receiver was not renamed
            assert type_ not in DEPRECATED_COMPONENT_TYPES, (
                f"{section}.{component_id}: use {DEPRECATED_COMPONENT_TYPES[type_]!r}"
            )


# --- tail sampling ---------------------------------------------------------------------------


@pytest.fixture(params=TAIL_SAMPLING_CONFIGS)
def sampling_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return collector_config(request.param)


def test_policies_are_well_formed(sampling_config: dict[str, Any]) -> None:
    policies = tail_sampling_policies(sampling_config)
    names = [policy.get("name") for policy in policies]
    assert all(names), "every policy needs a name"
    assert len(names) == len(set(names)), f"duplicate policy names: {names}"
    for policy in policies:
        type_ = policy.get("type")
        assert type_, f"policy {policy['name']} has no type"
        if type_ not in POLICY_TYPES_WITHOUT_BLOCK:
            assert policy.get(type_), f"policy {policy['name']} has no {type_!r} block"


def test_policy_keys_are_semconv_names(sampling_config: dict[str, Any]) -> None:
    keys = {
        policy[policy["type"]]["key"]
        for policy in tail_sampling_policies(sampling_config)
        if "key" in (policy.get(policy["type"]) or {})
    }
    assert keys, "no attribute policy found"
    unknown = keys - SEMCONV_NAMES
    assert not unknown, f"policy keys not defined in decisiontrace.semconv: {unknown}"
    ottl_attributes = {
        name
        for context in ("span", "spanevent")
        for condition in ottl_conditions(sampling_config, context)
        for name in re.findall(r'attributes\["([^"]+)"\]', condition)
    }
    unknown_ottl = ottl_attributes - SEMCONV_NAMES
    assert not unknown_ottl, f"OTTL attributes not in decisiontrace.semconv: {unknown_ottl}"


def test_keeps_failed_decisions(sampling_config: dict[str, Any]) -> None:
    boolean_policies = [
        block
        for block in policies_of_type(sampling_config, "boolean_attribute")
        if block.get("key") == semconv.OUTCOME_SUCCESS and block.get("value") is False
    ]
    ottl_policies = [
        condition
        for condition in ottl_conditions(sampling_config, "span")
        if f'attributes["{semconv.OUTCOME_SUCCESS}"] == false' in condition
    ]
    assert boolean_policies or ottl_policies, "no policy keeps traces with a failed decision"


def test_keeps_runs_that_did_not_complete(sampling_config: dict[str, Any]) -> None:
    wanted = {RunStatus.FAILED.value, RunStatus.STUCK.value, RunStatus.CANCELLED.value}
    blocks = [
        block
        for block in policies_of_type(sampling_config, "string_attribute")
        if block.get("key") == semconv.RUN_STATUS
    ]
    assert blocks, f"no string_attribute policy on {semconv.RUN_STATUS}"
    values = {value for block in blocks for value in block.get("values") or []}
    assert values == wanted, f"run status values {values}, expected {wanted}"
    assert values <= {status.value for status in RunStatus}
    assert not any(block.get("invert_match") for block in blocks)


def test_keeps_runs_with_problems(sampling_config: dict[str, Any]) -> None:
    event_condition = f'name == "{semconv.PROBLEM_EVENT}"'
    assert event_condition in ottl_conditions(sampling_config, "spanevent"), (
        f"no spanevent condition {event_condition}"
    )
    counts = [
        block
        for block in policies_of_type(sampling_config, "numeric_attribute")
        if block.get("key") == semconv.RUN_PROBLEM_COUNT
    ]
    assert counts, f"no numeric_attribute policy on {semconv.RUN_PROBLEM_COUNT}"
    for block in counts:
        assert block.get("min_value") == 1, block
        # Some collector versions read a missing max_value as 0 (never matching).
        assert block.get("max_value", 0) >= 2**31 - 1, block


def test_keeps_errors(sampling_config: dict[str, Any]) -> None:
    codes = {
        code
        for block in policies_of_type(sampling_config, "status_code")
        for code in block.get("status_codes") or []
    }
    assert "ERROR" in codes


def test_keeps_slow_decisions(sampling_config: dict[str, Any]) -> None:
    duration = re.compile(r"end_time_unix_nano - start_time_unix_nano > (\d+)")
    slow = [
        condition
        for condition in ottl_conditions(sampling_config, "span")
        if f'attributes["{semconv.SPAN_KIND}"] == "{semconv.KIND_DECISION}"' in condition
        and (match := duration.search(condition))
        and int(match.group(1)) == SLOW_DECISION_NANOS
    ]
    assert slow, "no span condition keeps decision spans longer than 2 s"


def test_keeps_a_ten_percent_baseline(sampling_config: dict[str, Any]) -> None:
    percentages = [
        block.get("sampling_percentage")
        for block in policies_of_type(sampling_config, "probabilistic")
    ]
    assert percentages == [10]


def test_tail_sampling_exports_to_jaeger_and_tempo(sampling_config: dict[str, Any]) -> None:
    for pipeline_id, pipeline in pipelines(sampling_config).items():
        if not any(component_type(p) == "tail_sampling" for p in pipeline["processors"]):
            continue
        exporters = sampling_config["exporters"]
        hosts = {
            host_and_port(exporters[exporter_id]["endpoint"])[0]
            for exporter_id in pipeline["exporters"]
            if component_type(exporter_id) == "otlp_grpc"
        }
        assert {"jaeger", "tempo"} <= hosts, f"pipeline {pipeline_id} exports to {hosts}"


def test_tail_sampling_decides_soon_after_the_run_span(sampling_config: dict[str, Any]) -> None:
    # The run span ends last. Without decision_wait_after_root_received a finished run
    # waits the whole decision_wait (minutes) before Jaeger or Tempo shows it.
    for processor_id, body in components_of_type(
        sampling_config, "processors", "tail_sampling"
    ).items():
        after_root = seconds(body.get("decision_wait_after_root_received", "0s"))
        cap = seconds(body.get("decision_wait", "30s"))
        assert 0 < after_root <= 10, f"{processor_id}: decision_wait_after_root_received"
        assert cap > after_root, f"{processor_id}: decision_wait must be the longer cap"


def test_sampler_tier_runs_the_same_policies() -> None:
    single, scaled = (tail_sampling_policies(collector_config(n)) for n in TAIL_SAMPLING_CONFIGS)
    assert single == scaled, "sampler policies drifted from the single-collector policies"


# --- load-balancing tier -----------------------------------------------------------------


def loadbalancing_exporters() -> dict[str, Any]:
    """The load_balancing exporters of the load-balancer config (there must be one)."""
    exporters = components_of_type(
        collector_config(LOADBALANCER_CONFIG), "exporters", "load_balancing"
    )
    assert exporters, "no load_balancing exporter"
    return exporters


def test_loadbalancer_routes_by_trace_id() -> None:
    for exporter_id, body in loadbalancing_exporters().items():
        assert body.get("routing_key") == "traceID", exporter_id
        otlp = (body.get("protocol") or {}).get("otlp")
        assert otlp is not None, f"{exporter_id}: protocol.otlp missing"
        assert "endpoint" not in otlp, f"{exporter_id}: the resolver sets the endpoint"
        resolver = body.get("resolver") or {}
        assert (resolver.get("static") or {}).get("hostnames") or (resolver.get("dns") or {}).get(
            "hostname"
        ), f"{exporter_id}: no static hostnames or dns hostname"


def test_loadbalancer_makes_no_sampling_decision() -> None:
    config = collector_config(LOADBALANCER_CONFIG)
    assert not components_of_type(config, "processors", "tail_sampling")


def test_loadbalancer_backends_are_sampler_services() -> None:
    services = compose_services()
    sampler_ports = otlp_receiver_ports(collector_config(SAMPLER_CONFIG), "grpc")
    for body in loadbalancing_exporters().values():
        hostnames = ((body.get("resolver") or {}).get("static") or {}).get("hostnames") or []
        for hostname in hostnames:
            host, port = host_and_port(hostname)
            assert host in services, f"backend {host!r} is not a compose service"
            assert service_config_file(services[host]).name == SAMPLER_CONFIG, host
            assert port in sampler_ports, f"backend port {port}, sampler listens on {sampler_ports}"


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_has_the_stack_services() -> None:
    missing = REQUIRED_SERVICES - set(compose_services())
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_compose_bind_mounts_exist_under_collector_config() -> None:
    override = load_yaml(TAIL_SAMPLING_COMPOSE_FILE)["services"]
    for name, service in [*compose_services().items(), *override.items()]:
        for source in bind_mounts(service).values():
            host_path = (CONFIG_DIR / source).resolve()
            assert host_path.is_relative_to(CONFIG_DIR.resolve()), f"{name}: {source} outside"
            assert host_path.exists(), f"{name} mounts {source}, which does not exist"


def test_collectors_load_a_mounted_collector_config() -> None:
    collectors = collector_services()
    assert "collector" in collectors, "the collector service does not run the contrib image"
    for name, service in collectors.items():
        config_file = service_config_file(service)
        assert config_file.is_file(), f"{name}: {config_file} is not a file"
        assert config_file.name in EXPECTED_COLLECTOR_CONFIGS, f"{name} loads {config_file.name}"


def test_collector_publishes_otlp_ports_to_the_host() -> None:
    collector = compose_services()["collector"]
    ports = published_ports(collector)
    assert {(4317, 4317), (4318, 4318)} <= ports, f"collector publishes {ports}"
    loaded = collector_config(service_config_file(collector).name)
    assert otlp_receiver_ports(loaded, "grpc") == {4317}
    assert otlp_receiver_ports(loaded, "http") == {4318}


def test_compose_default_keeps_every_run() -> None:
    # A new user's first look at the stack must show every run as soon as it ends:
    # no sampling in the default collector, both backends fed.
    collector = compose_services()["collector"]
    assert service_config_file(collector).name == DEFAULT_CONFIG
    default = collector_config(DEFAULT_CONFIG)
    assert not components_of_type(default, "processors", "tail_sampling")
    assert not components_of_type(default, "processors", "probabilistic_sampler")
    traces = pipelines(default)["traces"]
    hosts = {
        host_and_port(default["exporters"][exporter_id]["endpoint"])[0]
        for exporter_id in traces["exporters"]
        if component_type(exporter_id) == "otlp_grpc"
    }
    assert hosts == {"jaeger", "tempo"}, hosts
    for body in components_of_type(default, "processors", "batch").values():
        assert seconds(body.get("timeout", "200ms")) <= 1, "runs would show late"


def test_tail_sampling_compose_file_swaps_the_collector_config() -> None:
    override = load_yaml(TAIL_SAMPLING_COMPOSE_FILE)["services"]
    assert set(override) == {"collector"}, "the override touches only the collector"
    base = compose_services()["collector"]
    config_path = command_flag(base, "--config")
    assert config_path
    mounts = bind_mounts(override["collector"])
    # Compose merges volumes by container path: the same target replaces the default.
    assert config_path in mounts, f"override mounts {mounts}, the collector reads {config_path}"
    mounted = (CONFIG_DIR / mounts[config_path]).resolve()
    assert mounted == (CONFIG_DIR / "otel-collector-tail-sampling.yaml").resolve()


def test_images_are_pinned() -> None:
    for name, service in compose_services().items():
        image = str(service.get("image", ""))
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned to a version"


def test_tempo_loads_the_mounted_tempo_config() -> None:
    tempo = compose_services()["tempo"]
    config_path = command_flag(tempo, "-config.file")
    assert config_path, "tempo started without -config.file"
    assert mounted_host_file(tempo, config_path) == TEMPO_CONFIG.resolve()


def test_tempo_config_has_no_tempo_2_blocks() -> None:
    # Tempo 3.0 removed the ingester and compactor; their blocks fail its config parse.
    leftover = TEMPO_2_BLOCKS & set(load_yaml(TEMPO_CONFIG))
    assert not leftover, f"tempo.yaml has Tempo 2.x blocks: {leftover}"


def test_compose_runs_tempo_3_and_jaeger_2() -> None:
    services = compose_services()
    tempo_tag = str(services["tempo"]["image"]).rsplit(":", 1)[1]
    jaeger_tag = str(services["jaeger"]["image"]).rsplit(":", 1)[1]
    assert int(tempo_tag.split(".")[0]) >= 3, tempo_tag
    assert int(jaeger_tag.split(".")[0]) == 2, jaeger_tag


def test_tempo_config_receives_otlp_and_keeps_arrays_searchable() -> None:
    tempo = load_yaml(TEMPO_CONFIG)
    trace_storage = tempo["storage"]["trace"]
    assert trace_storage["backend"] == "local"
    # Array attributes (option_ids) and span events are only queryable from vParquet4.
    assert trace_storage["block"]["version"] == "vParquet4"
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]
    host, tempo_grpc_port = host_and_port(grpc["endpoint"])
    assert host == "0.0.0.0"
    for path in COLLECTOR_CONFIGS:
        for exporter_id, body in components_of_type(
            collector_config(path.name), "exporters", "otlp_grpc"
        ).items():
            exporter_host, exporter_port = host_and_port(body["endpoint"])
            if exporter_host == "tempo":
                assert exporter_port == tempo_grpc_port, f"{path.name} {exporter_id}"


# --- Grafana -------------------------------------------------------------------------------


def datasource(type_: str) -> dict[str, Any]:
    """The single provisioned Grafana data source of one type."""
    matches: list[dict[str, Any]] = [
        ds for ds in load_yaml(DATASOURCES)["datasources"] if ds.get("type") == type_
    ]
    assert len(matches) == 1, f"expected one {type_} data source, found {len(matches)}"
    return matches[0]


def test_grafana_tempo_datasource_points_at_tempo_http_port() -> None:
    host, port = host_and_port(datasource("tempo")["url"])
    assert host == "tempo"
    assert host in compose_services()
    assert port == load_yaml(TEMPO_CONFIG)["server"]["http_listen_port"]


def test_grafana_jaeger_datasource_points_at_jaeger_query_port() -> None:
    host, port = host_and_port(datasource("jaeger")["url"])
    assert host == "jaeger"
    assert host in compose_services()
    assert port in {target for _published, target in published_ports(compose_services()[host])}


def test_grafana_provisions_datasources_with_anonymous_admin() -> None:
    grafana = compose_services()["grafana"]
    provisioned = mounted_host_file(grafana, "/etc/grafana/provisioning/datasources")
    assert provisioned == DATASOURCES.parent.resolve()
    env = environment(grafana)
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Admin"


# --- README ------------------------------------------------------------------------------------


def test_readme_queries_use_real_attribute_names() -> None:
    text = README.read_text(encoding="utf-8")
    names = {name for groups in README_ATTRIBUTE.findall(text) for name in groups if name}
    assert names, "README has no TraceQL or Jaeger query on decisiontrace attributes"
    unknown = names - SEMCONV_NAMES
    assert not unknown, f"README queries names not in decisiontrace.semconv: {unknown}"


def test_readme_describes_every_config() -> None:
    text = README.read_text(encoding="utf-8")
    names = {*EXPECTED_COLLECTOR_CONFIGS, TAIL_SAMPLING_COMPOSE_FILE.name, TEMPO_CONFIG.name}
    undocumented = {name for name in names if name not in text}
    assert not undocumented, f"README does not mention {undocumented}"
