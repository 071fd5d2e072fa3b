"""The alert service end to end: real runs of a small project on the embedded bus, events published on the
bus, the SMTP and HTTP receivers of conftest.py really receiving, a fake clock for throttling and deadlines."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.scheduling.scheduling_helpers import Harness

from alert_receivers import Hook, Mailbox
from sluice import events as ev
from sluice.alerts.service import AlertService
from sluice.bus.names import ALERTS_GROUP, EVENTS_TOPIC
from sluice.errors import StateError
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.runtime.run import Backends, open_backends, run_project
from sluice.runtime.summary import RunOptions
from sluice.scheduling.scheduler import FakeClock
from sluice.server.services import ServerSettings, Services
from sluice.state.base import ObjectState, RunRecord, TickRecord

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_project(tmp_path: Path, hook: Hook, smtp: Mailbox, extra: str = "") -> Project:
    """orders (1001) and payments (1002, criticality high) feed daily (2001); oncall gets high-criticality failures
    (webhook and email), team (Slack-compatible) everything else."""
    (tmp_path / "sluice.yaml").write_text(
        f"""
name: shop
retry: {{attempts: 2, backoff_s: 0}}
schedules: {{nightly: {{cron: "0 2 * * *"}}}}
objects:
  - {{id: 1001, name: orders}}
  - {{id: 1002, name: payments}}
  - {{id: 2001, name: daily, parents: [1001, 1002]}}
alerts:
  ui_url: http://ui.example:8000/
  channels:
    oncall: {{type: webhook, url: "{hook.url}/oncall"}}
    mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none, from: sluice@example.com, to: [oncall@example.com]}}
    team: {{type: slack, url: "{hook.url}/team"}}
  rules:
    - {{on: [object_failed, run_failed], criticality: high, channels: [oncall, mail], throttle: 0}}
    - on: [object_failed, retries_exhausted, run_failed, check_failed, schedule_missed, sla_missed]
      channels: [team]
{extra}""",
        encoding="utf-8",
    )
    project = load_project(tmp_path / "sluice.yaml")
    objects = dict(project.objects)
    objects[1002] = dataclasses.replace(objects[1002], criticality="high", tags=("finance",))
    return dataclasses.replace(project, objects=objects)


def drain(service: AlertService, backends: Backends, timeout_s: float = 0.0) -> int:
    """Poll until the service's group has committed everything on the bus; the alerts sent."""
    sent = 0
    for _ in range(100):
        sent += service.poll(timeout_s)
        if backends.bus.lag(ALERTS_GROUP, EVENTS_TOPIC) == 0:
            return sent
    raise AssertionError("the alert service did not catch up")


def posts(hook: Hook, path: str) -> list[dict[str, Any]]:
    return [body for p, _, body in hook.posts if p == path]


def publish(backends: Backends, *events: ev.Event) -> None:
    backends.bus.publish(EVENTS_TOPIC, [(None, ev.encode(e)) for e in events])


def test_a_failed_run_alerts_by_criticality_and_a_restart_sends_nothing_again(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    project = make_project(tmp_path, hook, smtp)
    with open_backends(project) as backends:
        publish(backends, ev.ScheduleMissed(run_id="", schedule="old", logical_date="2026-11-29T02:00:00+00:00", reason="x"))
        service = AlertService(project, backends.bus, backends.state, clock=Clock())
        service.open()  # a new group starts at the end of the log: the old miss raises nothing
        summary = run_project(project, RunOptions(simulate=True, delay_scale=0.0, fail=frozenset({1002})))
        assert summary.status == "failed"
        assert drain(service, backends) == 5
        service.stop()
        oncall = posts(hook, "/oncall")
        assert [(b["trigger"], b["severity"], b["object_id"]) for b in oncall] == [
            ("object_failed", "critical", 1002),
            ("run_failed", "critical", None),
        ]
        failed = oncall[0]
        assert failed["title"] == "object 1002 payments failed after 2 attempts"
        assert failed["error"] == "TransientError: forced failure (--fail 1002)"
        assert failed["run_id"] == summary.run_id and failed["criticality"] == "high"
        assert failed["url"] == f"http://ui.example:8000/?run={summary.run_id}"
        assert "object 1002 payments: forced failure" in oncall[1]["error"]
        assert [str(mail["Subject"]).strip() for _, _, mail in smtp.mails] == [  # a long subject is folded
            "[sluice] [CRITICAL] shop: object 1002 payments failed after 2 attempts",
            f"[sluice] [CRITICAL] shop: run {summary.run_id} failed",
        ]
        team = posts(hook, "/team")  # the first matching rule wins: team only gets what oncall's rule does not take
        assert [b["text"].splitlines()[0] for b in team] == [
            "[CRITICAL] shop: object 1002 payments failed after 2 attempts: retries exhausted"
        ]
        again = AlertService(project, backends.bus, backends.state, clock=Clock())
        assert drain(again, backends) == 0  # committed after sending: nothing is sent twice
        again.stop()
    assert len(hook.posts) == 3 and len(smtp.mails) == 2


def test_check_failed_and_schedule_missed_from_the_bus(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    """A failed check (error or warn) and a missed schedule alert; a passed check and another project's run do not."""
    project = make_project(tmp_path, hook, smtp)
    with open_backends(project) as backends:
        service = AlertService(project, backends.bus, backends.state, clock=Clock())
        service.open()
        check = ev.CheckFinished(
            run_id="r-1", object_id=1001, stage="ingest", check="orders_id_not_null", kind="not_null", status="failed",
            failing_rows=3, sample=["17", "18", "21"], message="3 rows with id null",
        )  # fmt: skip
        passed = msgspec.structs.replace(check, check="other", status="passed", failing_rows=0)
        warned = msgspec.structs.replace(check, check="few_rows", kind="row_count", severity="warn", status="failed")
        missed = ev.ScheduleMissed(
            run_id="", schedule="nightly", logical_date="2026-11-30T02:00:00+00:00", reason="catch-up: latest"
        )
        other = ev.RunStarted(run_id="r-other", project="another-project", targets=[1001], planned=[1001])
        publish(backends, check, passed, warned, missed, other, msgspec.structs.replace(check, run_id="r-other"))
        assert drain(service, backends) == 3
        service.stop()
    team = posts(hook, "/team")
    assert [b["blocks"][0]["text"]["text"] for b in team] == [
        "[ERROR] shop: check orders_id_not_null (not_null) failed on object 1001 orders",
        "[WARNING] shop: check few_rows (row_count) failed on object 1001 orders",
        "[WARNING] shop: schedule nightly missed its tick of 2026-11-30T02:00:00+00:00",
    ]
    assert "failing rows: 3" in team[0]["text"] and "sample: 17, 18, 21" in team[0]["text"]
    assert "error: catch-up: latest" in team[2]["text"]


def test_repeats_are_throttled_and_folded_into_the_next_alert(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    project = make_project(tmp_path, hook, smtp, "      throttle: 15m\n")
    clock = Clock()
    miss = ev.ScheduleMissed(run_id="", schedule="hourly", logical_date="2026-11-30T02:00:00+00:00", reason="busy")
    with open_backends(project) as backends:
        service = AlertService(project, backends.bus, backends.state, clock=clock)
        service.open()
        for step in (0, 60, 120, 300, 1000):  # seconds after T0: sent, held, held, held, sent with 3 folded
            clock.t = T0 + step
            publish(backends, msgspec.structs.replace(miss, logical_date=f"2026-11-30T02:{step // 60:02d}:00+00:00"))
            drain(service, backends)
        publish(backends, msgspec.structs.replace(miss, schedule="daily"))  # another subject: not throttled
        drain(service, backends)
        service.stop()
    team = posts(hook, "/team")
    assert [b["text"].splitlines()[-1] for b in team] == [
        "error: busy",
        "and 3 more since 2026-11-30T02:01:00+00:00",
        "error: busy",
    ]


def test_sla_deadlines_with_a_fake_clock(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    sla = """  sla:
    - {name: nightly-2h, schedule: nightly, finish_within: 2h}
    - {name: by-six, targets: [daily], by: "06:00", timezone: Europe/Paris}
"""
    project = make_project(tmp_path, hook, smtp, sla)
    clock = Clock()
    with open_backends(project) as backends:
        state = backends.state
        options = {"schedule": "nightly", "trigger": "schedule", "logical_date": "2026-11-30T02:00:00+01:00"}
        state.create_run(RunRecord("r-late", "shop", "running", T0, options=options), [])
        state.create_run(RunRecord("r-other", "shop", "running", T0, options={"schedule": "hourly"}), [])
        service = AlertService(project, backends.bus, state, clock=clock)
        service.open()
        clock.t = T0 + 3600
        assert service.check_slas() == 0
        clock.t = T0 + 2 * 3600 + 60  # 04:01 UTC: past 2 h; 06:00 Paris is 05:00 UTC
        assert service.check_slas() == 1
        assert service.check_slas() == 0  # once per deadline and run
        clock.t = T0 + 3 * 3600 + 60  # 05:01 UTC: the run (which plans nothing of daily) is not under by-six
        assert service.check_slas() == 0
        # a run of daily that ended late between two looks: its RunFinished raises the miss
        state.create_run(RunRecord("r-daily", "shop", "running", T0, options=options), [])
        publish(backends, ev.RunStarted(run_id="r-daily", project="shop", targets=[2001], planned=[1001, 1002, 2001],
                                        logical_date=options["logical_date"], trigger="schedule", schedule="nightly",
                                        ts=datetime.fromtimestamp(T0, UTC)))  # fmt: skip
        finished = datetime.fromtimestamp(T0 + 3 * 3600 + 600, UTC)
        publish(backends, ev.RunFinished(run_id="r-daily", status="succeeded", duration_s=3 * 3600 + 600.0, ts=finished))
        assert drain(service, backends) == 2  # both deadlines apply to it
        service.stop()
    texts = [b["text"] for b in posts(hook, "/team")]
    assert [t.splitlines()[0] for t in texts] == [
        "[WARNING] shop: run r-late missed its deadline (nightly-2h: finish within 2h of its start)",
        "[WARNING] shop: run r-daily missed its deadline (nightly-2h: finish within 2h of its start)",
        "[WARNING] shop: run r-daily missed its deadline (by-six: finish by 06:00 Europe/Paris)",
    ]
    assert [t.splitlines()[2] for t in texts] == [
        "error: still running 1m after its deadline",
        "error: finished 1h10m late",
        "error: finished 10m late",
    ]
    assert "deadline: 2026-11-30T05:00:00+00:00" in texts[2] and "run in the UI: http://ui.example:8000/?run=r-daily" in texts[2]


def test_sluice_serve_hosts_the_service(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    project = make_project(tmp_path, hook, smtp)
    services = Services(project, ServerSettings(workers=False, resume=False))
    services.start()
    try:
        assert services.alerts is not None
        missed = ev.ScheduleMissed(run_id="", schedule="nightly", logical_date="2026-11-30T02:00:00+00:00", reason="x")
        services.backends.bus.publish(EVENTS_TOPIC, [(None, ev.encode(missed))])
        deadline = time.monotonic() + 30
        while not hook.posts and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        services.stop()
    assert [b["text"].splitlines()[0] for b in posts(hook, "/team")] == [
        "[WARNING] shop: schedule nightly missed its tick of 2026-11-30T02:00:00+00:00"
    ]


def test_a_failed_delivery_is_counted_and_does_not_stop_the_service(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    from prometheus_client import REGISTRY

    def count(channel: str, status: str) -> float:
        return REGISTRY.get_sample_value("sluice_alerts_sent_total", {"channel": channel, "status": status}) or 0.0

    project = make_project(tmp_path, hook, smtp)
    hook.statuses = [500, 500, 500]  # every attempt of the first delivery fails
    before = count("team", "failed"), count("team", "ok")
    with open_backends(project) as backends:
        service = AlertService(project, backends.bus, backends.state, clock=Clock(), sleep=lambda s: None)
        service.open()
        missed = ev.ScheduleMissed(run_id="", schedule="a", logical_date="2026-11-30T02:00:00+00:00", reason="x")
        publish(backends, missed, msgspec.structs.replace(missed, schedule="b"))
        assert drain(service, backends) == 1
        service.stop()
    assert (count("team", "failed") - before[0], count("team", "ok") - before[1]) == (1.0, 1.0)
    assert len(hook.posts) == 4


@pytest.mark.kafka
def test_the_consumer_group_on_kafka(tmp_path: Path, hook: Hook, smtp: Mailbox, kafka_ns_url: str) -> None:
    """On the Kafka bus: a new group starts at the end, alerts are sent then committed, a restart sends nothing again."""
    project = make_project(tmp_path, hook, smtp)
    project = dataclasses.replace(project, bus_url=kafka_ns_url)
    miss = ev.ScheduleMissed(run_id="", schedule="old", logical_date="2026-11-30T02:00:00+00:00", reason="before")
    with open_backends(project) as backends:
        publish(backends, miss)
        service = AlertService(project, backends.bus, backends.state, clock=Clock())
        service.open()
        publish(backends, msgspec.structs.replace(miss, schedule="a"), msgspec.structs.replace(miss, schedule="b"))
        assert drain(service, backends, timeout_s=1.0) == 2
        service.stop()
        again = AlertService(project, backends.bus, backends.state, clock=Clock())
        assert drain(again, backends, timeout_s=1.0) == 0
        again.stop()
    assert [b["text"].splitlines()[0].split(": ", 1)[1] for b in posts(hook, "/team")] == [
        "schedule a missed its tick of 2026-11-30T02:00:00+00:00",
        "schedule b missed its tick of 2026-11-30T02:00:00+00:00",
    ]


def test_sluice_serve_sends_the_alerts_of_its_runs(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    """``sluice serve`` as users start it: a run started through the API fails, the alerts reach the receivers."""
    import os
    import subprocess
    import sys

    import httpx

    import sluice
    from alert_receivers import free_port

    make_project(tmp_path, hook, smtp)  # (criticality is set in memory only: here every object is low/unset)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(sluice.__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "sluice", "serve", str(tmp_path), "--port", str(port), "--simulate", "--delay-scale", "0"]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([*command, "--fail", "1002"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        run_id = httpx.post(f"{url}/orchestrate", json={"targets": None, "force": True}).json()["run_id"]
        while len(posts(hook, "/team")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert [b["text"].splitlines()[0] for b in posts(hook, "/team")] == [
        "[ERROR] shop: object 1002 payments failed after 2 attempts",
        "[ERROR] shop: object 1002 payments failed after 2 attempts: retries exhausted",
        f"[ERROR] shop: run {run_id} failed",
    ]
    assert posts(hook, "/oncall") == [] and smtp.mails == []  # no object is of criticality high in the file


def test_two_services_share_deadlines_and_throttles_and_a_restart_keeps_them(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    sla = "  sla:\n    - {name: nightly-2h, schedule: nightly, finish_within: 2h}\n"
    project = make_project(tmp_path, hook, smtp, "      throttle: 15m\n" + sla)
    clock = Clock()
    miss = ev.ScheduleMissed(run_id="", schedule="hourly", logical_date="2026-11-30T02:00:00+00:00", reason="busy")
    with open_backends(project) as backends:
        options = {"schedule": "nightly", "trigger": "schedule", "logical_date": "2026-11-30T02:00:00+01:00"}
        backends.state.create_run(RunRecord("r-late", "shop", "running", T0, options=options), [])
        # two processes of the project (two sluice serve), each its own consumer group here so both see every event
        one = AlertService(project, backends.bus, backends.state, clock=clock, group="alerts-one")
        two = AlertService(project, backends.bus, backends.state, clock=clock, group="alerts-two")
        one.open(), two.open()
        clock.t = T0 + 2 * 3600 + 60
        assert one.check_slas() + two.check_slas() == 1  # the missed deadline goes out once
        publish(backends, miss)
        assert one.poll() + two.poll() == 1  # the same alert seen by both: sent once, the other a repeat
        one.stop(), two.stop()
        clock.t += 60
        again = AlertService(project, backends.bus, backends.state, clock=clock, group="alerts-one")  # a restart
        again.open()
        assert again.check_slas() == 0
        publish(backends, msgspec.structs.replace(miss, logical_date="2026-11-30T03:00:00+00:00"))
        assert again.poll() == 0  # still within the 15 minutes
        clock.t += 15 * 60
        publish(backends, msgspec.structs.replace(miss, logical_date="2026-11-30T04:00:00+00:00"))
        assert again.poll() == 1
        again.stop()
    texts = [b["text"] for b in posts(hook, "/team")]
    assert len(texts) == 3 and texts[-1].splitlines()[-1] == "and 2 more since " + datetime.fromtimestamp(
        T0 + 2 * 3600 + 60, UTC
    ).isoformat(timespec="seconds")


def test_a_failed_run_alerts_once_even_when_its_states_are_not_saved_yet(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    """The coordinator publishes RunFinished before its writer saves the final states (the bus's write comes first):
    a service handling it in between finds the run still going in the state store. The alert is raised and routed
    from the event alone, exactly once."""
    project = make_project(tmp_path, hook, smtp)
    with open_backends(project) as backends:
        service = AlertService(project, backends.bus, backends.state, clock=Clock())
        service.open()
        summary = run_project(project, RunOptions(simulate=True, delay_scale=0.0, fail=frozenset({1002})))
        assert summary.status == "failed"
        state = backends.state
        unsaved = [dataclasses.replace(s, status="running", error=None) for s in state.object_states(summary.run_id).values()]
        state.save(summary.run_id, unsaved)  # as the store is when RunFinished is on the bus and the writer not done
        with state.db.write() as conn:  # type: ignore[attr-defined]
            conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", (summary.run_id,))
        drain(service, backends)
        service.stop()
    title = f"shop: run {summary.run_id} failed"
    run_failed = [p for p, _, b in hook.posts if title in (b.get("text") or "").splitlines()[0]]
    assert run_failed == ["/oncall"]  # once, by the criticality rule (the event names payments), not team's default
    oncall = posts(hook, "/oncall")
    assert "object 1002 payments: forced failure" in next(b for b in oncall if b["trigger"] == "run_failed")["error"]
    subjects = [str(mail["Subject"]).strip() for _, _, mail in smtp.mails]
    assert subjects.count(f"[sluice] [CRITICAL] shop: run {summary.run_id} failed") == 1


def test_a_schedules_by_deadline_is_met_by_its_own_run_only_and_ignores_backfill_runs(
    tmp_path: Path, hook: Hook, smtp: Mailbox
) -> None:
    sla = """  sla:
    - {name: by-six, schedule: nightly, by: "06:00", timezone: Europe/Paris}
    - {name: daily-by-seven, targets: [daily], by: "07:00"}
"""
    project = make_project(tmp_path, hook, smtp, sla)
    nightly = dataclasses.replace(project.schedules[0], timezone="Europe/Paris")  # 02:00 Paris, as the tick below
    project = dataclasses.replace(project, schedules=(nightly,))
    clock = Clock()
    tick = "2026-11-30T01:00:00+00:00"  # 02:00 in Paris: due by 06:00 Paris, 05:00 UTC
    with open_backends(project) as backends:
        state = backends.state
        # the scheduler fired the tick but its run never started (the process died, the launch failed)
        state.record_ticks([TickRecord("shop", "nightly", tick, "fired", T0, "r-never")])
        planned = [ObjectState(1001, "ingest"), ObjectState(1002, "ingest"), ObjectState(2001, "application")]
        backfill = {"schedule": "backfill:b1", "trigger": "backfill", "logical_date": tick}
        state.create_run(RunRecord("r-backfill", "shop", "running", T0, options=backfill), planned)
        state.finish_run("r-backfill", "succeeded", T0 + 600)  # a backfill of that very date, done on time
        old = {"schedule": "backfill:b1", "trigger": "backfill", "logical_date": "2026-11-01T00:00:00+00:00"}
        state.create_run(RunRecord("r-backfill-old", "shop", "running", T0, options=old), planned)
        service = AlertService(project, backends.bus, state, clock=clock)
        service.open()
        clock.t = T0 + 2 * 3600 + 60  # 04:01 UTC: before the deadline
        assert service.check_slas() == 0
        clock.t = T0 + 3 * 3600 + 60  # 05:01 UTC
        assert service.check_slas() == 1
        assert service.check_slas() == 0  # once per deadline and tick
        publish(backends, ev.RunFinished(run_id="r-backfill-old", status="succeeded", duration_s=1.0))
        drain(service, backends)  # a backfill run finishing long after its date's deadline raises nothing
        service.stop()
    texts = [b["text"] for b in posts(hook, "/team")]
    assert [t.splitlines()[0] for t in texts] == [
        f"[WARNING] shop: schedule nightly has no run of {tick} (by-six: finish by 06:00 Europe/Paris)"
    ]
    assert "error: no run 1m after its deadline: its run did not start" in texts[0]


class _StoreAwayOnce:
    """The state store, away for the first claim of a run_failed alert's throttle key (as when the database
    restarts while the alert is routed)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def claim_alert(self, project: str, key: str, window_s: float, now: float) -> tuple[bool, int, float | None]:
        if "run_failed" in key and not self.failed:
            self.failed = True
            raise StateError("state store (sqlite): database is locked")
        return self.inner.claim_alert(project, key, window_s, now)  # type: ignore[no-any-return]


def test_a_run_failed_alert_not_routed_because_the_store_was_away_is_sent_at_the_next_poll(
    tmp_path: Path, hook: Hook, smtp: Mailbox
) -> None:
    project = make_project(tmp_path, hook, smtp)
    with open_backends(project) as backends:
        state = _StoreAwayOnce(backends.state)
        service = AlertService(project, backends.bus, state, clock=Clock())  # type: ignore[arg-type]
        service.open()
        summary = run_project(project, RunOptions(simulate=True, delay_scale=0.0, fail=frozenset({1002})))
        with pytest.raises(StateError):
            service.poll()
        assert state.failed
        drain(service, backends)  # the service's loop polls again after a failed poll
        service.stop()
    title = f"shop: run {summary.run_id} failed"
    assert [p for p, _, b in hook.posts if title in (b.get("text") or "").splitlines()[0]] == ["/oncall"]
    assert [t for _, _, b in hook.posts if (t := b.get("trigger")) == "object_failed"] == ["object_failed"]  # not twice


@pytest.mark.parametrize("catch_up", ["none", "latest"])
def test_a_tick_no_scheduler_recorded_misses_its_by_deadline_once_whatever_the_scheduler_does_when_back(
    tmp_path: Path, hook: Hook, smtp: Mailbox, catch_up: str
) -> None:
    sla = '  sla:\n    - {name: by-six, schedule: nightly, by: "06:00"}\n'
    project = make_project(tmp_path, hook, smtp, sla)
    nightly = dataclasses.replace(project.schedules[0], catch_up=catch_up)  # type: ignore[arg-type]
    project = dataclasses.replace(project, schedules=(nightly,))
    tick = "2026-11-30T02:00:00+00:00"  # due by 06:00 UTC
    clock = Clock(T0 - 3600)
    with open_backends(project) as backends:
        state = backends.state
        down = FakeClock(datetime.fromtimestamp(T0 - 3600, UTC))
        Harness(project, state, down, holder="before").scheduler.step()  # its baseline (29 Nov); then it is down
        service = AlertService(project, backends.bus, state, clock=clock)
        service.open()
        clock.t = T0 + 4 * 3600 - 60  # 05:59: no record of the 02:00 tick, but its deadline has not passed
        assert service.check_slas() == 0
        clock.t = T0 + 4 * 3600 + 60  # 06:01
        assert service.check_slas() == 1
        assert service.check_slas() == 0  # once
        down.set(datetime.fromtimestamp(T0 + 4 * 3600 + 120, UTC))  # the scheduler is back at 06:02
        back = Harness(project, state, down, holder="back", lease_s=0.001)
        report = back.scheduler.step()
        publish(backends, *back.published)
        for run_id in back.starter.run_ids:  # latest: the 02:00 run, started late, finishes at 06:30
            ts = datetime.fromtimestamp(T0 + 4 * 3600 + 1800, UTC)
            state.finish_run(run_id, "succeeded", ts.timestamp())
            publish(backends, ev.RunFinished(run_id=run_id, status="succeeded", duration_s=1680.0, ts=ts))
        sent = drain(service, backends)
        clock.t = T0 + 4 * 3600 + 3600
        sent += service.check_slas()
        service.stop()
    if catch_up == "none":
        assert report.fired == [] and [t.logical_date for t in report.missed] == [tick] and sent == 1  # schedule_missed
    else:
        assert [t.logical_date for t in report.fired] == [tick] and report.missed == [] and sent == 0
    texts = [b["text"].splitlines() for b in posts(hook, "/team")]
    assert texts[0][0] == f"[WARNING] shop: schedule nightly has no run of {tick} (by-six: finish by 06:00 UTC)"
    why = "no scheduler recorded the tick (the scheduler was down, or had set the schedule apart)"
    assert f"error: no run 1m after its deadline: {why}" in texts[0]
    assert [t[0] for t in texts[1:]] == (
        [f"[WARNING] shop: schedule nightly missed its tick of {tick}"] if catch_up == "none" else []
    )
