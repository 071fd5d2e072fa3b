"""SchedulerHost: the scheduler in a thread, with the services it hosts started and stopped around it."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_for
from tests.scheduling.scheduling_helpers import project_with

from sluice.runtime.run import open_backends
from sluice.scheduling.host import SchedulerHost


class Service:
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls = calls
        self.name = name

    def start(self) -> None:
        self.calls.append(f"start {self.name}")

    def stop(self) -> None:
        self.calls.append(f"stop {self.name}")


def test_the_host_takes_the_lease_runs_its_services_and_releases_it(tmp_path: Path) -> None:
    project = project_with(tmp_path, "  nightly: {cron: '0 2 * * *'}\n")
    calls: list[str] = []
    with open_backends(project) as backends:
        host = SchedulerHost(
            project,
            backends,
            holder="here",
            services=[Service(calls, "alerts"), Service(calls, "sensors")],
            on_step=lambda r: None,
        )
        host.start()
        wait_for(lambda: host.last is not None and host.last.leader, 30, "the host to hold the lease")
        lease = backends.state.lease("shop")
        assert lease is not None and lease.holder == "here" and host.running()
        host.stop()
        assert not host.running()
        assert backends.state.lease("shop") is None
        assert calls == ["start alerts", "start sensors", "stop sensors", "stop alerts"]
        assert backends.state.last_ticks("shop")["nightly"].status == "baseline"


def test_a_scheduler_taking_the_lease_resumes_the_runs_a_dead_one_left_running(tmp_path: Path) -> None:
    """A scheduler killed (``kill -9``) while its run was going left it ``running``: without a resume, that run never
    ends and ``max_active_runs`` holds the schedule back for ever. The next lease holder finishes it."""
    import time
    from datetime import UTC, datetime, timedelta

    from sluice.runtime.coordinator import Coordinator
    from sluice.runtime.summary import RunOptions
    from sluice.scheduling.scheduler import FakeClock, Scheduler
    from sluice.scheduling.starter import CoordinatorStarter
    from sluice.state.base import TickRecord

    project = project_with(tmp_path, "  every: {cron: '* * * * *'}\n")
    tick = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with open_backends(project) as backends:
        # The dead scheduler: its tick recorded, its run begun (RunStarted and the first ObjectReady published), and
        # then nothing: no coordinator loop, no worker.
        dead = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions(logical_date=tick))
        run_id = dead.start()
        dead.release_lease()  # a dead process renews no lease
        backends.state.record_ticks([TickRecord("shop", "every", tick.isoformat(), "fired", time.time(), run_id)])
        assert backends.state.get_run(run_id).status == "running"

        starter = CoordinatorStarter(project, backends)  # in-process workers
        scheduler = Scheduler(project, backends.state, starter, clock=FakeClock(tick + timedelta(seconds=10)), holder="b")
        try:
            report = scheduler.step()
            assert report.leader and not report.fired  # the tick is not fired again
            wait_for(lambda: backends.state.get_run(run_id).status != "running", 60, "the resumed run to finish")
        finally:
            starter.close(grace_s=5)
        assert backends.state.get_run(run_id).status == "succeeded"
        assert [t.run_id for t in backends.state.ticks("shop", "every") if t.status == "fired"] == [run_id]
