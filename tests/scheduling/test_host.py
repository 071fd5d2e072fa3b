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
