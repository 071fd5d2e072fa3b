"""The monitoring stack in deploy/: what can be proved without Docker.

- ``promtool check config`` accepts deploy/prometheus/prometheus.yml, which scrapes the compose services;
- the compose file names every service of the stack, each with a healthcheck, and every file it mounts exists;
- the dashboards are valid Grafana JSON whose data sources are the provisioned ones;
- Promtail extracts the fields Sluice's JSON log lines really carry;
- live: a real Prometheus scrapes a real ``sluice serve`` and a ``sluice worker`` over Kafka, as deployed, while
  runs, API traffic, an SSE client and a dead letter go through them, a second ``sluice serve`` serving a data
  API (GraphQL, REST, a gateway route, a live subscription fed by a sync from MariaDB into PostgreSQL that
  the server runs: api_stack.py) with its traffic, and a process exposing the sync metrics
  (sluice.observability.cdc_metrics) with changing values, as a running sync does; then every PromQL query of
  every dashboard panel returns data from real series, and every metric a panel names is one Sluice exports.

Loki queries (the logs panel) are not checked against Prometheus. Prometheus comes from the Debian package,
through scripts/servers/prometheus.sh, Kafka, MariaDB and PostgreSQL from scripts/servers/*.sh (the
mysql_url and pg_url fixtures); without them these tests skip locally and fail with CI=true.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import api_stack
import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import checks_stack
from servers_fixtures import mysql_database, pg_database, start_server, unavailable
from sluice.api import metrics as api_metrics
from sluice.api.security import metrics as api_security_metrics
from sluice.api.subscriptions import metrics as api_subscription_metrics
from sluice.observability import cdc_metrics, metrics
from sluice.observability.logs import JsonFormatter, log_context

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
PROMTAIL = DEPLOY / "promtail" / "promtail.yml"
LOKI = DEPLOY / "loki" / "loki.yml"
PROMETHEUS_SCRIPT = REPO / "scripts" / "servers" / "prometheus.sh"
SEED = REPO / "examples" / "seed-002" / "Objets.json"
# every module defining Sluice's metrics
METRIC_MODULES = (metrics, cdc_metrics, api_metrics, api_security_metrics, api_subscription_metrics)

REQUIRED_SERVICES = {
    "sluice",
    "worker-ingest",
    "worker-standardize",
    "worker-application",
    "kafka",
    "postgres",
    "mysql",
    "minio",
    "prometheus",
    "grafana",
    "loki",
    "promtail",
}
SERVER_JOB = "sluice-server"
WORKERS_JOB = "sluice-workers"
DEADLINE_S = 180  # waiting for a run or a scrape: generous for a loaded machine, never asserted on
LIVE_TIMEOUT_S = 1200  # the first live test also starts Kafka, which may fetch its jars with Maven


# ----- reading the deploy files ------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return services


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def datasource_uids() -> dict[str, str]:
    """Provisioned data source type -> uid."""
    return {source["type"]: source["uid"] for source in load_yaml(DATASOURCES)["datasources"]}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"


def prometheus_queries() -> list[PanelQuery]:
    """Every PromQL expression of every panel (Loki targets left out)."""
    prometheus_uid = datasource_uids()["prometheus"]
    queries = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if source.get("uid") == prometheus_uid:
                    queries.append(PanelQuery(name, panel["title"], target["refId"], target["expr"]))
    return queries


def variable_queries() -> list[tuple[str, str]]:
    """(dashboard, PromQL) of each template variable that asks Prometheus for its values."""
    prometheus_uid = datasource_uids()["prometheus"]
    found = []
    for name, board in dashboards().items():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query" and variable["datasource"]["uid"] == prometheus_uid:
                query = variable["query"]
                found.append((name, query["query"] if isinstance(query, dict) else query))
    return found


def metric_names(expr: str) -> set[str]:
    """The ``sluice_*`` metric names an expression mentions (quoted label values left out)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\bsluice_[A-Za-z0-9_]*", unquoted))


def concrete(expr: str, board: dict[str, Any], window: str) -> str:
    """``expr`` as Grafana would send it: time macros set to ``window``, each variable to its "All" value."""
    values = {"__rate_interval": window, "__range": window, "__interval": window}
    for variable in board["templating"]["list"]:
        values[variable["name"]] = variable.get("allValue") or variable["current"]["value"]

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"{expr!r} uses ${name}, which is neither a Grafana macro nor a variable of the dashboard"
        return str(values[name])

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def compose_metrics_port(service: dict[str, Any]) -> int | None:
    for argument in service["command"]:
        if str(argument).startswith("--metrics-port="):
            return int(str(argument).split("=", 1)[1])
    return None


# ----- static checks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool, installed with the prometheus Debian package by scripts/servers/prometheus.sh when missing."""
    return installed("promtool")


def installed(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        done = subprocess.run([str(PROMETHEUS_SCRIPT), "check"], capture_output=True, text=True, timeout=900, check=False)
        found = shutil.which(program)
        if found is None:
            unavailable(f"{program} is missing and scripts/servers/prometheus.sh could not install it:\n{done.stderr.strip()}")
    return found


def test_promtool_accepts_the_prometheus_config(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_prometheus_scrapes_the_server_and_every_worker_of_the_compose_file() -> None:
    services = compose_services()
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    targets = {
        job_name: {target for group in job["static_configs"] for target in group["targets"]} for job_name, job in jobs.items()
    }
    server_port = next(a for a in services["sluice"]["command"] if str(a).startswith("--port=")).split("=", 1)[1]
    assert targets[SERVER_JOB] == {f"sluice:{server_port}"}
    assert jobs[SERVER_JOB].get("metrics_path", "/metrics") == "/metrics"
    workers = {name: compose_metrics_port(service) for name, service in services.items() if name.startswith("worker-")}
    assert all(port is not None for port in workers.values()), f"every worker needs --metrics-port=N: {workers}"
    assert targets["sluice-workers"] == {f"{name}:{port}" for name, port in workers.items()}


def test_compose_file_names_the_whole_stack_with_healthchecks() -> None:
    services = compose_services()
    assert set(services) >= REQUIRED_SERVICES, f"missing services: {sorted(REQUIRED_SERVICES - set(services))}"
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        depends = service.get("depends_on", {})
        for dependency, condition in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            assert dependency in services, f"{name} depends on {dependency}, which is not a service"
            assert condition.get("condition") == "service_healthy", f"{name} should wait for {dependency} to be healthy"
    for name in ("sluice", "worker-ingest", "worker-standardize", "worker-application"):
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(services["promtail"]["depends_on"]) == {"loki"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus", "loki"}


def test_compose_runs_sluice_over_kafka_and_postgres_with_json_logs() -> None:
    services = compose_services()
    server = [str(a) for a in services["sluice"]["command"]]
    assert server[:2] == ["serve", "/project"]
    assert {"--host=0.0.0.0", "--bus=kafka://kafka:9092", "--log-format=json"} <= set(server)
    assert any(a.startswith("--state=postgresql://") and "@postgres:5432/" in a for a in server)
    for stage in ("ingest", "standardize", "application"):
        worker = [str(a) for a in services[f"worker-{stage}"]["command"]]
        assert worker[:2] == ["worker", "/project"]
        assert {f"--stage={stage}", "--bus=kafka://kafka:9092", "--log-format=json"} <= set(worker)
    build = services["sluice"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert (DEPLOY / "Dockerfile").read_text(encoding="utf-8").count('ENTRYPOINT ["sluice"]') == 1


def test_compose_commands_use_options_sluice_has() -> None:
    from click.testing import CliRunner

    from sluice.cli.main import cli

    for name, service in compose_services().items():
        if service.get("image") != "sluice:dev":
            continue
        command = [str(argument) for argument in service["command"]]
        shown = CliRunner().invoke(cli, [command[0], "--help"])
        assert shown.exit_code == 0, shown.output
        for option in (argument.split("=", 1)[0] for argument in command if argument.startswith("--")):
            assert re.search(rf"(^|[\s,]){re.escape(option)}\b", shown.output), (
                f"{name}: 'sluice {command[0]}' has no {option} option"
            )


def test_every_file_the_compose_file_mounts_exists() -> None:
    services = compose_services()
    named_volumes = set(load_yaml(COMPOSE).get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(volume)).split(":", 1)[0]  # ${VAR:-default} -> default
            if source.startswith((".", "/")):
                path = source if source.startswith("/") else str((COMPOSE.parent / source).resolve())
                if path == "/var/run/docker.sock":
                    continue  # the Docker host's socket (Promtail reads container logs through it)
                assert Path(path).exists(), f"{name} mounts {source}, which does not exist in the repository"
            else:
                assert source in named_volumes, f"{name} mounts volume {source!r}, which is not declared under volumes:"


def test_grafana_provisioning_matches_the_mounts() -> None:
    grafana = compose_services()["grafana"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in grafana["volumes"]}
    provider = load_yaml(DASHBOARD_PROVIDERS)["providers"][0]
    assert provider["type"] == "file"
    assert (COMPOSE.parent / mounts[provider["options"]["path"]]).resolve() == DASHBOARDS
    sources = load_yaml(DATASOURCES)["datasources"]
    assert {s["type"]: s["url"] for s in sources} == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100"}
    assert len({s["uid"] for s in sources}) == len(sources)


def test_dashboards_are_valid_and_use_the_provisioned_data_sources() -> None:
    uids = set(datasource_uids().values())
    boards = dashboards()
    assert set(boards) == {
        "sluice-pipeline",
        "sluice-server",
        "sluice-bus",
        "sluice-syncs",
        "sluice-api",
        "sluice-streams",
        "sluice-data-quality",
    }
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["uid"] == name
        assert 36 <= board["schemaVersion"] <= 41
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids {ids}"
        for panel in board["panels"]:
            where = f"{name} / {panel['title']}"
            assert panel["type"] in ("timeseries", "stat", "logs", "table"), where
            assert panel["datasource"]["uid"] in uids, where
            assert panel["targets"], f"{where} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, where
                assert target["expr"].strip(), where
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
        for variable in board["templating"]["list"]:
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in uids, f"{name}: variable {variable['name']}"


def test_pipeline_dashboard_has_a_logs_panel_filtering_by_run_and_level() -> None:
    board = dashboards()["sluice-pipeline"]
    logs = [panel for panel in board["panels"] if panel["type"] == "logs"]
    assert len(logs) == 1
    assert logs[0]["datasource"]["uid"] == datasource_uids()["loki"]
    expr = logs[0]["targets"][0]["expr"]
    assert 'level=~"$level"' in expr and 'run_id=~"$run_id"' in expr
    assert {v["name"] for v in board["templating"]["list"]} >= {"level", "run_id"}


def test_promtail_extracts_the_fields_sluice_logs() -> None:
    record = logging.LogRecord("sluice.worker", logging.WARNING, __file__, 1, "object %s failed", (2005,), None)
    with log_context(run_id="r-1", object_id=2005, stage="standardize"):
        line = json.loads(JsonFormatter().format(record))
    config = load_yaml(PROMTAIL)
    assert config["clients"][0]["url"] == "http://loki:3100/loki/api/v1/push"
    stages = config["scrape_configs"][0]["pipeline_stages"][0]["match"]["stages"]
    by_kind = {next(iter(stage)): next(iter(stage.values())) for stage in stages}
    extracted = by_kind["json"]["expressions"]
    missing = set(extracted.values()) - set(line)
    assert not missing, f"Promtail extracts fields Sluice does not log: {missing}"
    assert set(by_kind["labels"]) == {"level", "logger", "stage"}  # few values each: labels
    assert set(by_kind["structured_metadata"]) == {"run_id", "object_id"}  # one per run or object: not labels
    assert set(by_kind["labels"]) | set(by_kind["structured_metadata"]) <= set(extracted)
    assert by_kind["timestamp"]["source"] == "timestamp" and "timestamp" in line
    loki = load_yaml(LOKI)
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["schema_config"]["configs"][-1]["schema"] == "v13" and loki["schema_config"]["configs"][-1]["store"] == "tsdb"


def test_docs_list_every_panel_with_its_query() -> None:
    docs = (REPO / "docs" / "monitoring.md").read_text(encoding="utf-8")
    for board in dashboards().values():
        for panel in board["panels"]:
            title = panel["title"]
            assert f"| {title} ({panel['type']}) |" in docs, f"docs/monitoring.md does not list the panel {title!r}"
            for target in panel["targets"]:
                assert target["expr"].replace("|", "\\|") in docs, f"docs/monitoring.md does not show the query of {title!r}"


def test_dashboard_expressions_use_only_known_variables() -> None:
    boards = dashboards()
    for query in prometheus_queries():
        concrete(query.expr, boards[query.dashboard], "5m")  # asserts on unknown variables


# ----- live: Prometheus scraping sluice serve ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, check: Any, detail: Any = lambda: "") -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}\n{detail()}", pytrace=False)
        time.sleep(0.25)


@dataclass
class SluiceProcess:
    """A ``sluice serve`` or ``sluice worker`` subprocess; ``url`` is where its ``/metrics`` answers."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    bus_url: str
    project: Path

    @property
    def target(self) -> str:
        return self.url.removeprefix("http://")

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_sluice(arguments: list[str], port: int, ready_path: str, log: Path, bus_url: str, project: Path) -> SluiceProcess:
    """Start ``sluice ARGUMENTS`` and wait until ``ready_path`` answers 200 on ``port``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice", *arguments], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
        )
    started = SluiceProcess(f"http://127.0.0.1:{port}", process, log, bus_url, project)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"sluice {arguments[0]} exited with {process.returncode}:\n{started.log_tail()}", pytrace=False)
        try:
            return httpx.get(f"{started.url}{ready_path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(f"sluice {arguments[0]} to answer {ready_path}", ready, started.log_tail)
    except BaseException:
        started.stop()
        raise
    return started


@pytest.fixture(scope="module")
def kafka_bus_url() -> str:
    """The throwaway Kafka broker (scripts/servers/kafka.sh): the bus of the deployed stack."""
    return start_server("kafka.sh", "SLUICE_TEST_KAFKA_URL")


@pytest.fixture(scope="module")
def sluice_server(kafka_bus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceProcess]:
    """``sluice serve`` over Kafka on a copy of the seed project, simulated, with object 2005 failing every attempt."""
    root = tmp_path_factory.mktemp("serve")
    project = root / "seed"
    project.mkdir()
    shutil.copy(SEED, project / "Objets.json")
    port = free_port()
    arguments = ["serve", str(project), "--host", "127.0.0.1", "--port", str(port), "--simulate", "--delay-scale", "0.01"]
    arguments += ["--fail", "2005", "--bus", kafka_bus_url, "--log-format", "json"]
    server = start_sluice(arguments, port, "/health", root / "serve.log", kafka_bus_url, project)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sluice_worker(sluice_server: SluiceProcess) -> Iterator[SluiceProcess]:
    """A ``sluice worker`` of the standardize stage (where 2005 fails) beside the server's own, with its metrics port."""
    port = free_port()
    project = sluice_server.project
    arguments = ["worker", str(project), "--stage", "standardize", "--metrics-port", str(port)]
    arguments += ["--bus", sluice_server.bus_url, "--log-format", "json"]
    worker = start_sluice(arguments, port, "/metrics", project.parent / "worker.log", sluice_server.bus_url, project)
    try:
        yield worker
    finally:
        worker.stop()


def scrape_config(targets: dict[str, list[str]], path: Path) -> Path:
    """deploy/prometheus/prometheus.yml's jobs for ``targets`` (job -> host:port list), scraping every second."""
    deployed = load_yaml(PROMETHEUS_CONFIG)
    jobs = []
    for job in deployed["scrape_configs"]:
        if job["job_name"] in targets:
            local = {key: value for key, value in job.items() if key != "static_configs"}
            local["static_configs"] = [{"targets": targets[job["job_name"]]}]
            jobs.append(local)
    assert {job["job_name"] for job in jobs} == set(targets)
    config = {"global": {**deployed["global"], "scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Prometheus:
    url: str
    config: Path
    env: dict[str, str]

    def script(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROMETHEUS_SCRIPT), *arguments], capture_output=True, text=True, timeout=300, env=self.env, check=False
        )


SYNC_METRICS_PROCESS = """
import sys, time
from sluice.observability import cdc_metrics as m, metrics
tables = [("employees", "hr.employes"), ("employees", "hr.departements"), ("articles", "base_a.articles")]
for sync, table in tables:
    m.register_table(sync, table)
metrics.serve(int(sys.argv[1]))
step = 0
while True:
    step += 1
    for sync, table in tables:
        m.LAG.labels(sync, table).set(0.05 * (step % 7))
        m.SNAPSHOT_ROWS.labels(sync, table).inc(100)
        m.SNAPSHOT_PROGRESS.labels(sync, table).set(min(1.0, step / 50))
        m.TABLE_STOPPED.labels(sync, table).set(1 if table == "hr.departements" else 0)
        m.INVALID_DATES.labels(sync, table).inc(step % 2)
        for operation in ("insert", "update", "delete"):
            m.CAPTURED.labels(sync, table, operation).inc(3)
            m.APPLIED.labels(sync, table, operation).inc(3)
        if step % 5 == 0:
            m.CONFLICTS.labels(sync, table).inc()
            m.DEAD_LETTERS.labels(sync, table).inc()
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def sync_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceProcess]:
    """A process exposing the sync metrics (sluice.observability.cdc_metrics) with values that change, on its own
    metrics port, as ``sluice sync --metrics-port`` does while it captures and applies (no database needed)."""
    root = tmp_path_factory.mktemp("sync-metrics")
    port = free_port()
    log = root / "sync-metrics.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SYNC_METRICS_PROCESS, str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=root
        )
    started = SluiceProcess(f"http://127.0.0.1:{port}", process, log, "", root)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the sync metrics process exited with {process.returncode}:\n{started.log_tail()}", pytrace=False)
        try:
            return "sluice_cdc_lag_seconds" in httpx.get(f"{started.url}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False

    try:
        wait_until("the sync metrics process to answer /metrics", ready, started.log_tail)
        yield started
    finally:
        started.stop()


STREAM_PROJECT = """
name: streams
connections: {{events: "{kafka}"}}
objects:
  - id: 1001
    name: events
    source: {{type: kafka, connection: events, topic: {topic}}}
    streaming: {{trigger: {{interval: 500ms}}}}
  - id: 1002
    name: per_second
    source: {{type: kafka, connection: events, topic: {topic}, group: per-second}}
    streaming:
      trigger: {{interval: 500ms}}
      window: {{type: tumbling, size: 1s, time_column: ts, watermark: 0s, aggregates: {{n: count(*)}}}}
"""


def feed_topic(bootstrap: str, topic: str, stop: threading.Event) -> None:
    """About 200 records a second with the current time as event time; every 50th malformed, every 20th late."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    i = 0
    while not stop.is_set():
        i += 1
        at = time.time() - (3600 if i % 20 == 0 else 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
        value = b"{oops" if i % 50 == 0 else json.dumps({"id": i, "ts": stamp}).encode()
        producer.produce(topic, value)
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(10)


@pytest.fixture(scope="module")
def stream_metrics(kafka_bus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceProcess]:
    """``sluice stream --metrics-port`` of two streaming objects (one windowed) over a topic a producer feeds."""
    import uuid

    from confluent_kafka.admin import AdminClient, NewTopic

    from sluice.urls import kafka_servers

    bootstrap = kafka_servers(kafka_bus_url)
    topic = f"sluice-test-monitoring-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    root = tmp_path_factory.mktemp("stream")
    (root / "sluice.yaml").write_text(STREAM_PROJECT.format(kafka=kafka_bus_url, topic=topic), encoding="utf-8")
    stop = threading.Event()
    feeder = threading.Thread(target=feed_topic, args=(bootstrap, topic, stop), daemon=True)
    feeder.start()
    port = free_port()
    arguments = ["stream", str(root), "--metrics-port", str(port), "--quiet"]
    started = start_sluice(arguments, port, "/metrics", root / "stream.log", kafka_bus_url, root)
    try:
        wait_until(
            "the streams to commit, dead-letter and count late records",
            lambda: all(
                re.search(rf"^{re.escape(series)} [1-9]", httpx.get(f"{started.url}/metrics", timeout=5).text, re.MULTILINE)
                for series in (
                    'sluice_stream_records_total{object="events"}',
                    f'sluice_kafka_dead_letters_total{{object="1001",topic="{topic}"}}',
                    'sluice_stream_late_records_total{object="per_second"}',
                )
            ),
            started.log_tail,
        )
        yield started
    finally:
        started.stop()
        stop.set()
        feeder.join(30)
        names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(topic)]
        for future in admin.delete_topics(names, operation_timeout=10).values():
            future.result()


@dataclass(frozen=True)
class ApiDatabases:
    hr: str  # MariaDB: the sync's source
    warehouse: str  # PostgreSQL: the sync's target, served by the data API


@pytest.fixture(scope="module")
def api_databases(mysql_url: str, pg_url: str) -> Iterator[ApiDatabases]:
    """A fresh MariaDB database and a fresh PostgreSQL database for api_stack.py's sync, dropped afterwards."""
    with mysql_database(mysql_url) as hr, pg_database(pg_url) as warehouse:
        yield ApiDatabases(hr, warehouse)


@pytest.fixture(scope="module")
def api_server(api_databases: ApiDatabases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceProcess]:
    """``sluice serve --sync emp`` of a project with a data API (api_stack.py: SQLite, JWT, a rate limit per
    subject, a gateway route to a local upstream, a PostgreSQL table the sync copies from MariaDB), on the
    embedded bus, logging JSON lines; yielded once the sync's snapshot reached PostgreSQL."""
    root = tmp_path_factory.mktemp("api")
    with api_stack.upstream() as upstream_url:
        project = api_stack.write_project(root / "shop", upstream_url, api_databases.hr, api_databases.warehouse)
        port = free_port()
        arguments = ["serve", str(project), "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]
        arguments += ["--sync", "emp"]
        server = start_sluice(arguments, port, "/health", root / "api-serve.log", "", project)
        try:
            wait_until(
                "the sync's snapshot in PostgreSQL",
                lambda: api_stack.warehouse_rows(api_databases.warehouse) == len(api_stack.STAFF),
                server.log_tail,
            )
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module", name="prometheus_server")
def prometheus(
    sluice_server: SluiceProcess,
    sluice_worker: SluiceProcess,
    sync_metrics: SluiceProcess,
    api_server: SluiceProcess,
    stream_metrics: SluiceProcess,
    checks_server: SluiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    """A fresh Prometheus (scripts/servers/prometheus.sh) scraping both servers, the worker and the sync process every second."""
    installed("prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    servers = [sluice_server.target, api_server.target, checks_server.target]
    targets = {SERVER_JOB: servers, WORKERS_JOB: [sluice_worker.target, sync_metrics.target, stream_metrics.target]}
    config = scrape_config(targets, root / "prometheus.yml")
    env = {**os.environ, "SLUICE_PROMETHEUS_DATA": str(root / "data")}
    done = subprocess.run(
        [str(PROMETHEUS_SCRIPT), "start", str(config)], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"scripts/servers/prometheus.sh start failed:\n{done.stdout}{done.stderr}"
    server = Prometheus(lines[-1].strip(), config, env)
    try:
        yield server
    finally:
        stopped = server.script("stop")
        assert stopped.returncode == 0, stopped.stderr


def instant(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=30).json()
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def total(prometheus_url: str, expr: str) -> float:
    return sum(float(sample["value"][1]) for sample in instant(prometheus_url, expr))


def not_scraped(prometheus_url: str, processes: Sequence[SluiceProcess]) -> str:
    """Why a wait for every target to be up gave up: the targets Prometheus does not see up, with its last error,
    and the processes that exited, with their logs' end."""
    targets = httpx.get(f"{prometheus_url}/api/v1/targets", timeout=30).json()["data"]["activeTargets"]
    lines = [
        f"target {t['scrapeUrl']} ({t['labels'].get('job')}): {t['health']} {t.get('lastError', '')}"
        for t in targets
        if t["health"] != "up"
    ]
    for process in processes:
        if process.process.poll() is not None:
            lines.append(f"{process.url} exited with {process.process.returncode}:\n{process.log_tail()}")
    return "\n".join(lines) or "every target up now"


class SseClient:
    """A client of GET /events/stream reading frames in a thread until closed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[str] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with httpx.stream("GET", f"{self.url}/events/stream", params={"keepalive_s": "0.5"}, timeout=30) as response:
            self.connected.set()
            for line in response.iter_lines():
                if line.startswith("event:"):
                    self.frames.append(line)
                if self._stop.is_set():
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass
class LiveStack:
    prometheus: str
    server: SluiceProcess
    window: str
    exported: dict[str, str] = field(default_factory=dict)  # metric family -> type, from the live /metrics
    sampled: set[str] = field(default_factory=set)  # names with at least one sample in the live /metrics
    api_traffic: api_stack.Traffic | None = None  # what was sent to the data API


def finish_run(server: SluiceProcess, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/orchestrate", json=body, timeout=30)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    detail: dict[str, Any] = {}

    def finished() -> bool:
        detail.update(httpx.get(f"{server.url}/runs/{run_id}", timeout=30).json())
        return bool(detail["status"] != "running")

    wait_until(f"run {run_id} to finish", finished, server.log_tail)
    return detail


def dead_letter_a_message(server: SluiceProcess) -> None:
    """Put a message that is no event on the ingest work queue, as a broken producer would."""
    from sluice.bus.registry import open_bus

    bus = open_bus(server.bus_url)
    try:
        bus.publish("sluice.ready.ingest", [("1001", b"this is not an event")])
    finally:
        bus.close()


@pytest.fixture(scope="module")
def checks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceProcess]:
    """``sluice serve`` of checks_stack.py's project (checks that pass, fail and warn), on its embedded bus."""
    root = tmp_path_factory.mktemp("checks")
    project = checks_stack.write_project(root / "quality")
    port = free_port()
    arguments = ["serve", str(project), "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]
    server = start_sluice(arguments, port, "/health", root / "checks-serve.log", "", project)
    try:
        yield server
    finally:
        server.stop()


def run_checks(server: SluiceProcess, prometheus: str) -> int:
    """One run of the checks project once Prometheus has scraped its check counters at zero (created when the
    server starts: a counter's first sample has no increase, so the run's outcomes are increases); the runs made."""
    series = len(checks_stack.DECLARED) * 3  # passed, failed, error
    wait_until(
        "Prometheus to scrape the check counters at zero",
        lambda: total(prometheus, 'count(sluice_check_runs_total{project="quality"} == 0)') == series,
        server.log_tail,
    )
    run = finish_run(server, {})
    assert run["status"] == "failed", run  # the accepted_values check (error) failed orders; paid was skipped
    return 1


def exported_families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))


def sampled_names(text: str) -> set[str]:
    return set(re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def live(
    sluice_server: SluiceProcess,
    sluice_worker: SluiceProcess,
    sync_metrics: SluiceProcess,
    api_server: SluiceProcess,
    api_databases: ApiDatabases,
    stream_metrics: SluiceProcess,
    checks_server: SluiceProcess,
    prometheus_server: Prometheus,
) -> Iterator[LiveStack]:
    """Runs and API traffic through the servers while Prometheus scrapes them and the worker, then a scrape after all of it."""
    started = time.time()
    server = sluice_server
    prometheus = prometheus_server.url
    processes = (server, sluice_worker, sync_metrics, api_server, stream_metrics, checks_server)
    wait_until(
        "Prometheus to scrape both servers, sluice worker and the sync metrics",
        lambda: total(prometheus, "sum(up)") == len(processes),
        lambda: not_scraped(prometheus, processes),
    )
    sse = SseClient(server.url)
    subscribed = ExitStack()
    try:
        assert sse.connected.wait(30), "the SSE stream did not open"
        runs = [
            finish_run(server, {}),  # 2005 fails after its retries, its descendants are skipped
            finish_run(server, {"targets": [3003]}),  # a branch without 2005: succeeds
            finish_run(server, {"force": True}),
        ]
        assert [run["status"] for run in runs] == ["failed", "succeeded", "failed"]
        check_runs = run_checks(checks_server, prometheus)
        dead_letter_a_message(server)
        client = httpx.Client(base_url=server.url, timeout=30)
        assert client.get("/runs").status_code == 200
        assert client.get("/objects").status_code == 200
        assert client.get("/objects/2005").status_code == 200
        assert client.get("/objects/999999").status_code == 404
        assert client.get("/no-such-endpoint").status_code == 404
        assert client.get("/events/last").status_code == 200
        client.close()
        watcher = subscribed.enter_context(api_stack.watch(api_server.url, api_databases.hr))  # open until the end
        api_traffic = api_stack.drive(api_server.url, 0, watcher)
        first_pushes = watcher.pushes
        wait_until(
            "Prometheus to scrape the data API's first round",
            lambda: (
                total(prometheus, "sum(sluice_api_requests_total)") >= api_traffic.requests
                and total(prometheus, "sum(sluice_api_subscription_pushes_total)") >= first_pushes
            ),
            api_server.log_tail,
        )
        second = api_stack.drive(api_server.url, 1, watcher)
        api_traffic = api_stack.Traffic(api_traffic.requests + second.requests, api_traffic.credentials + second.credentials)
        wait_until(
            "the dead letter to be counted",
            lambda: "sluice_bus_dead_letters_total{" in httpx.get(f"{server.url}/metrics", timeout=30).text,
            server.log_tail,
        )
        traffic_done = time.time()
        pushes, hires = watcher.pushes, watcher.hires
        wait_until(
            "Prometheus to scrape after the runs and the traffic",
            lambda: (
                total(prometheus, "min(timestamp(up))") > traffic_done + 1
                and total(prometheus, "sum(sluice_runs_total)") == len(runs) + check_runs
                and total(prometheus, "sum(sluice_check_runs_total)") == check_runs * len(checks_stack.FAILING_ROWS)
                and total(prometheus, "sum(sluice_sse_clients)") >= 1
                and total(prometheus, "sum(sluice_api_requests_total)") == api_traffic.requests
                and total(prometheus, "sum(sluice_api_subscription_pushes_total)") >= pushes
                and total(prometheus, "sum(sluice_api_subscription_change_windows_total)") >= hires
            ),
        )
        exposition = "\n".join(httpx.get(f"{p.url}/metrics", timeout=30).text for p in processes)
        window = f"{math.ceil(time.time() - started) + 60}s"
        assert sse.frames, "the SSE client received no event during the runs"
        families, sampled = exported_families(exposition), sampled_names(exposition)
        yield LiveStack(prometheus, server, window, families, sampled, api_traffic)
    finally:
        subscribed.close()
        sse.close()


@pytest.mark.timeout(LIVE_TIMEOUT_S)
@pytest.mark.parametrize("query", prometheus_queries(), ids=lambda q: q.name)
def test_every_panel_query_returns_data(live: LiveStack, query: PanelQuery) -> None:
    expr = concrete(query.expr, dashboards()[query.dashboard], live.window)
    result = instant(live.prometheus, expr)
    unsampled = sorted(name for name in metric_names(expr) if name not in live.sampled)
    assert result, f"{query.name}: no data for {expr}" + (
        f"; {unsampled} has no series: the code that owns it must create its label sets at zero" if unsampled else ""
    )
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), f"{query.name}: only NaN/Inf for {expr}: {result}"


def panel_values(live: LiveStack, dashboard: str, title: str) -> dict[tuple[str, ...], float]:
    """The values of every query of the panel ``title`` now, keyed by refId then the label values of the
    series in the order of the labels' names."""
    board = dashboards()[dashboard]
    panel = next(panel for panel in board["panels"] if panel["title"] == title)
    found = {}
    for target in panel["targets"]:
        for sample in instant(live.prometheus, concrete(target["expr"], board, live.window)):
            labels = sample["metric"]
            found[(target["refId"], *(labels[name] for name in sorted(labels)))] = float(sample["value"][1])
    return found


@pytest.mark.timeout(LIVE_TIMEOUT_S)
def test_subscription_panels_show_the_live_subscription_and_its_changes(live: LiveStack) -> None:
    """The subscription panels show api_stack.py's traffic itself: its one open subscription, and the pushes,
    re-runs, change messages and windows of the rows inserted in MariaDB after a scrape (a rate above 0)."""
    assert panel_values(live, "sluice-api", "Subscriptions open") == {("A", "editor", "employes"): 1.0}  # role, table
    assert panel_values(live, "sluice-api", "Subscription pushes per second")[("A", "editor", "employes")] > 0
    runs = panel_values(live, "sluice-api", "Live query runs by outcome")  # outcome, table
    assert runs[("A", "changed", "employes")] > 0 and ("A", "first", "employes") in runs
    changes = panel_values(live, "sluice-api", "Change messages and windows per second")  # topic
    assert {key[0] for key in changes} == {"A", "B"} and all(value > 0 for value in changes.values()), changes
    topics = {key[1] for key in changes}
    assert len(topics) == 1 and next(iter(topics)).startswith("sluice.cdc.emp.hr."), changes


@pytest.mark.timeout(LIVE_TIMEOUT_S)
def test_data_quality_panels_show_the_checks_that_passed_failed_and_warned(live: LiveStack) -> None:
    """The data-quality dashboard shows checks_stack.py's run: two passed checks, one failed (error) and one warned;
    the failing rows of each check at its last run; the duration of each kind."""
    board = "sluice-data-quality"
    # One check of each outcome: increase() extrapolates it to the window's ends (by half a scrape interval at most,
    # each side, over a series sampled since the server started), so 1 and a little more.
    outcomes = (
        ("Checks passed", checks_stack.PASSED),
        ("Checks failed", checks_stack.FAILED),
        ("Checks warned", checks_stack.WARNED),
    )
    for title, count in outcomes:
        value = panel_values(live, board, title)[("A",)]
        assert count <= value <= 1.5 * count, f"{title}: {value}"
    assert panel_values(live, board, "Checks failing now") == {("A",): 2.0}
    failing = panel_values(live, board, "Failing rows per check")  # check, object
    assert failing == {("A", check, obj): rows for (obj, check), rows in checks_stack.FAILING_ROWS.items()}
    last = panel_values(live, board, "Last failures")  # A: check, object, project; B: + severity, status
    assert {key for key in last if key[0] == "A"} == {
        ("A", "accepted_values_status", "orders", "quality"),
        ("A", "not_null_email", "customers", "quality"),
    }
    assert {key for key in last if key[0] == "B"} == {
        ("B", "accepted_values_status", "orders", "quality", "error", "failed"),
        ("B", "not_null_email", "customers", "quality", "warn", "failed"),
    }
    durations = panel_values(live, board, "Check duration p50 and p99 by kind")  # kind
    ran = {key: value for key, value in durations.items() if math.isfinite(value)}  # paid's row_count never ran
    assert {key[1] for key in ran} == {"not_null", "unique", "accepted_values"}, durations
    assert all(0 < value < 60 for value in ran.values()), durations


def family_of(name: str, exported: dict[str, str]) -> str | None:
    if name in exported:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and exported.get(base) == "histogram":
            return base
    return None


@pytest.mark.timeout(LIVE_TIMEOUT_S)
def test_api_requests_are_logged_as_json_lines(live: LiveStack, api_server: SluiceProcess) -> None:
    text = api_server.log.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [record for record in records if record["logger"] == "sluice.api.requests"]
    assert live.api_traffic is not None and len(requests) == live.api_traffic.requests  # one line per request
    seen = {(record["api"], record["status"], record.get("code")) for record in requests}
    assert seen >= {
        ("graphql", 200, None),
        ("graphql", 400, "validation-failed"),
        ("graphql", 401, "wrong-audience"),
        ("graphql", 429, "rate-limited"),
        ("rest", 200, None),
        ("rest", 401, "unknown-key"),
        ("proxy", 200, None),
        ("proxy", 403, "forbidden-role"),
    }, seen
    standard = {"timestamp", "level", "logger", "message", "api", "operation", "role", "status", "duration_ms"}
    for record in requests:
        assert standard <= set(record) <= standard | {"code"}, record
        assert record["level"] == "info" and record["duration_ms"] >= 0
    assert {record["operation"] for record in requests} >= {"getArticles", "getArticle", "insert_articles_one", "GET articles"}
    for credential in live.api_traffic.credentials:
        assert credential not in text
    lines = "\n".join(json.dumps(record) for record in requests)
    assert "Nouveau" not in lines and "SELECT" not in lines.upper()  # no values, no SQL


@pytest.mark.timeout(LIVE_TIMEOUT_S)
def test_every_metric_a_panel_names_is_exported(live: LiveStack) -> None:
    referenced = {name for query in prometheus_queries() for name in metric_names(query.expr)}
    referenced |= {name for _, query in variable_queries() for name in metric_names(query)}
    unknown = sorted(name for name in referenced if family_of(name, live.exported) is None)
    assert not unknown, f"dashboards name metrics sluice serve does not export: {unknown}"


def test_dashboards_show_every_metric_sluice_defines() -> None:
    collectors = [m for module in METRIC_MODULES for m in vars(module).values() if isinstance(m, MetricWrapperBase)]
    defined = {family.name for metric in collectors for family in metric.describe()}
    shown = {name for query in prometheus_queries() for name in metric_names(query.expr)}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}
    assert not defined - shown, f"metrics no dashboard panel shows: {sorted(defined - shown)}"


@pytest.mark.timeout(LIVE_TIMEOUT_S)
def test_prometheus_script_reuses_its_instance_and_refuses_another_config(
    live: LiveStack, prometheus_server: Prometheus, tmp_path: Path
) -> None:
    assert prometheus_server.script("status").returncode == 0
    assert prometheus_server.script("url").stdout.strip() == prometheus_server.url
    again = prometheus_server.script("start", str(prometheus_server.config))
    assert again.returncode == 0 and again.stdout.strip() == prometheus_server.url
    other = tmp_path / "other.yml"
    other.write_text(prometheus_server.config.read_text(encoding="utf-8"), encoding="utf-8")
    refused = prometheus_server.script("start", str(other))
    assert refused.returncode != 0 and "already running" in refused.stderr


def test_prometheus_script_prints_its_usage_for_an_unknown_command() -> None:
    done = subprocess.run([str(PROMETHEUS_SCRIPT), "restart-all"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "usage:" in done.stderr and "check [CONFIG]" in done.stderr


@pytest.mark.timeout(LIVE_TIMEOUT_S)
def test_variable_queries_find_values(live: LiveStack) -> None:
    for board, query in variable_queries():
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"{board}: unexpected variable query {query}"
        series, label = match.groups()
        values = {sample["metric"].get(label) for sample in instant(live.prometheus, series)}
        assert values - {None}, f"{board}: no values of {label} in {series}"
