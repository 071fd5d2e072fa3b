"""Subscriptions over graphql-transport-ws and SSE against SQLite, with change messages published by the test
on an embedded bus (the sync end to end is test_subscription_sync.py): results, pushes only on change, the
protocol's close codes, permissions and limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import msgspec
import pytest
from api_support import DDL, ROLES, HeaderGate, execute_all, served
from fastapi import FastAPI
from playwright.sync_api import sync_playwright
from subscription_clients import SseReader, metric, ws_client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from helpers import wait_for
from servers_fixtures import BROWSER_ARGS
from sluice.api.gate import DataApiError
from sluice.api.http import mount_api
from sluice.api.model import ExposedTable
from sluice.api.principal import Principal
from sluice.api.schema import RootField
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings
from sluice.api.subscriptions import mount_subscriptions
from sluice.api.subscriptions.live import SubscriptionHub
from sluice.api.subscriptions.sources import Feed
from sluice.bus.embedded import EmbeddedBus

TOPICS = {"employes": "test.hr.employes", "dept": "test.hr.dept"}
"""The tables with change events in these tests; ``journal`` has none."""
LIST = "subscription { employes(where: {dept_id: {_eq: 1}}, order_by: [{id: asc}]) { id nom } }"


class TokenGate(HeaderGate):
    """HeaderGate, and ``Authorization: Bearer bad`` is an invalid token (401); ``x-budget: N`` admits the
    credentials N times, then answers 429 (a rate limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.admitted: dict[str, int] = {}

    def admit(self, headers: Mapping[str, str], address: str, operation: str) -> Principal:
        if headers.get("authorization") == "Bearer bad":
            raise DataApiError("the token's signature is invalid", status=401, code="invalid-token")
        budget = headers.get("x-budget")
        if budget is not None:
            used = self.admitted[budget] = self.admitted.get(budget, 0) + 1
            if used > int(budget.split(":")[0]):
                raise DataApiError("over the rate limit", status=429, code="rate-limited", headers={"retry-after": "1"})
        return super().admit(headers, address, operation)


@dataclass
class Live:
    base_url: str
    db_url: str
    bus: EmbeddedBus

    def change(self, sql: str, table: str = "employes") -> None:
        """Run ``sql`` on the database, then publish a change message on the table's topic (as a sync would)."""
        execute_all(self.db_url, [sql])
        self.bus.publish(TOPICS[table], [("[0]", b"changed")])


def _resolve(table: ExposedTable) -> list[Feed]:
    topic = TOPICS.get(table.base)
    return [Feed("test", topic)] if topic else []


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    db_url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(db_url, DDL)
    raw = {
        "sources": [{"connection": "hr", "tables": ["*"]}],
        "roles": ROLES,
        "limits": {"subscriptions": {"per_connection": 2, "init_timeout_s": 1}},
    }
    api = DataApi(msgspec.convert(raw, ApiSettings), {"hr": db_url}, None, TokenGate())
    bus = EmbeddedBus(tmp_path / "bus.db")
    hub = SubscriptionHub(api, _resolve, bus, sync_names=["test"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(api.start, False)
        hub.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            hub.close_streams()
            await anyio.to_thread.run_sync(hub.close)
            await anyio.to_thread.run_sync(api.close)

    app = FastAPI(lifespan=lifespan)
    mount_api(app, api, mount_subscriptions(app, api, hub))
    try:
        with served(app) as http:
            yield Live(str(http.base_url).rstrip("/"), db_url, bus)
    finally:
        bus.close()


def _names(payload: dict[str, Any], field: str = "employes") -> list[str]:
    return [row["nom"] for row in payload["data"][field]]


def _wait_runs(outcome: str, before: float) -> None:
    runs = "sluice_api_subscription_runs_total"
    wait_for(lambda: metric(runs, table="employes", outcome=outcome) > before, 30, f"a '{outcome}' run")


def test_ws_pushes_the_result_then_only_changed_results(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        ws.subscribe("1", LIST)
        assert _names(ws.next_payload("1")) == ["Ana", "Bob"]
        assert metric("sluice_api_subscriptions_active", table="employes", role="admin") == 1
        same = metric("sluice_api_subscription_runs_total", table="employes", outcome="same")
        live.change("INSERT INTO employes (id, nom, dept_id) VALUES (10, 'Zoe', 2)")  # outside the filter
        _wait_runs("same", same)
        pushes = metric("sluice_api_subscription_pushes_total", table="employes", role="admin")
        live.change("INSERT INTO employes (id, nom, dept_id) VALUES (11, 'Yan', 1)")
        assert _names(ws.next_payload("1")) == ["Ana", "Bob", "Yan"]  # the first message after both changes
        assert metric("sluice_api_subscription_pushes_total", table="employes", role="admin") == pushes + 1
        ws.send({"id": "1", "type": "complete"})
        live.change("UPDATE employes SET nom = 'Anna' WHERE id = 1")
        ws.send({"type": "ping", "payload": {"n": 1}})
        assert ws.recv() == {"type": "pong", "payload": {"n": 1}}  # nothing more for the completed subscription
        wait_for(lambda: metric("sluice_api_subscriptions_active", table="employes", role="admin") == 0, 30, "the gauge")


def test_many_changes_cost_few_runs(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        ws.subscribe("a", "subscription { employes_aggregate { count } }")
        assert ws.next_payload("a")["data"]["employes_aggregate"] == [{"count": 5}]
        runs = sum(metric("sluice_api_subscription_runs_total", table="employes", outcome=o) for o in ("changed", "same"))
        rows = ", ".join(f"({i}, 'n{i}', 1)" for i in range(100, 1100))
        execute_all(live.db_url, [f"INSERT INTO employes (id, nom, dept_id) VALUES {rows}"])
        live.bus.publish(TOPICS["employes"], [(f"[{i}]", b"changed") for i in range(1000)])
        assert ws.next_payload("a")["data"]["employes_aggregate"] == [{"count": 1005}]
        after = sum(metric("sluice_api_subscription_runs_total", table="employes", outcome=o) for o in ("changed", "same"))
        assert 1 <= after - runs <= 3  # 1,000 change messages, published at once: one window, a re-run or two


def test_subscribers_of_one_document_share_its_runs(live: Live) -> None:
    with ws_client(live.base_url) as one, ws_client(live.base_url) as two:
        one.init({"x-role": "admin"})
        two.init({"x-role": "admin"})
        one.subscribe("s", LIST)
        two.subscribe("s", LIST)
        assert one.next_payload("s") == two.next_payload("s")
        first = metric("sluice_api_subscription_runs_total", table="employes", outcome="first")
        changed = metric("sluice_api_subscription_runs_total", table="employes", outcome="changed")
        live.change("UPDATE employes SET nom = 'Bobby' WHERE id = 2")
        assert _names(one.next_payload("s")) == _names(two.next_payload("s")) == ["Ana", "Bobby"]
        assert metric("sluice_api_subscription_runs_total", table="employes", outcome="changed") == changed + 1
        assert metric("sluice_api_subscription_runs_total", table="employes", outcome="first") == first


def test_role_filters_apply_and_refusals_are_errors(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"headers": {"X-Role": "reader"}})
        ws.subscribe("r", "subscription { employes(order_by: [{id: asc}]) { id } }")
        assert ws.next_payload("r") == {"data": {"employes": [{"id": 1}, {"id": 3}]}}  # actif rows, limit 2
        ws.subscribe("bad", "subscription { employes { salaire } }")
        assert ws.recv() == {
            "id": "bad",
            "type": "error",
            "payload": [
                {
                    "message": "role 'reader' may not read the column salaire of employes",
                    "extensions": {"code": "permission-denied"},
                }
            ],
        }
        ws.subscribe("j", "subscription { journal { msg } }")  # no permission comes before no change events
        error = ws.recv()
        assert error["type"] == "error" and error["payload"][0]["extensions"]["code"] == "permission-denied"
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "anon"})  # no permission on employes at all
        ws.subscribe("1", LIST)
        error = ws.recv()
        assert error["id"] == "1" and error["type"] == "error"
        assert error["payload"][0]["extensions"]["code"] == "permission-denied"


def test_each_subscribe_counts_against_the_rate_limits(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin", "x-budget": "3:ws"})  # connection_init, then two subscribes
        ws.subscribe("a", LIST)
        assert _names(ws.next_payload("a")) == ["Ana", "Bob"]
        ws.send({"id": "a", "type": "complete"})
        ws.subscribe("b", LIST)
        assert _names(ws.next_payload("b")) == ["Ana", "Bob"]
        ws.send({"id": "b", "type": "complete"})
        ws.subscribe("c", LIST)
        error = ws.recv()
        assert error["id"] == "c" and error["type"] == "error"
        assert error["payload"][0]["extensions"]["code"] == "rate-limited"
        ws.send({"type": "ping"})
        assert ws.recv() == {"type": "pong"}  # refused operation, open socket


def test_a_table_without_change_events_is_refused_by_name(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        ws.subscribe("j", "subscription { journal { msg } }")
        error = ws.recv()
        assert error["type"] == "error" and error["payload"][0]["extensions"]["code"] == "not-live"
        message = error["payload"][0]["message"]
        assert "journal" in message and "'hr'" in message and "syncs:" in message and "test" in message
        ws.subscribe("n", "subscription { employes { id dept { nom } } }")  # dept has events: accepted
        assert len(ws.next_payload("n")["data"]["employes"]) == 5


def test_relationships_read_are_watched(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        ws.subscribe("d", "subscription { employes_by_pk(id: 1) { nom dept { nom } } }")
        assert ws.next_payload("d") == {"data": {"employes_by_pk": {"nom": "Ana", "dept": {"nom": "R&D"}}}}
        live.change("UPDATE dept SET nom = 'Labo' WHERE id = 1", table="dept")
        assert ws.next_payload("d") == {"data": {"employes_by_pk": {"nom": "Ana", "dept": {"nom": "Labo"}}}}


def test_queries_and_mutations_answer_next_then_complete(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        ws.subscribe("q", "{ dept_by_pk(id: 2) { nom } }")
        assert ws.recv() == {"id": "q", "type": "next", "payload": {"data": {"dept_by_pk": {"nom": "Ventes"}}}}
        assert ws.recv() == {"id": "q", "type": "complete"}
        ws.subscribe("m", 'mutation { update_dept_by_pk(pk_columns: {id: 3}, _set: {nom: "Plein"}) { nom } }')
        assert ws.recv()["payload"] == {"data": {"update_dept_by_pk": {"nom": "Plein"}}}
        assert ws.recv() == {"id": "m", "type": "complete"}


def test_per_connection_limit(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        for operation_id in ("1", "2"):
            ws.subscribe(operation_id, LIST)
            ws.next_payload(operation_id)
        ws.subscribe("3", LIST)
        error = ws.recv()
        assert error["id"] == "3" and error["payload"][0]["extensions"]["code"] == "too-many-subscriptions"
        ws.send({"id": "1", "type": "complete"})
        ws.subscribe("3", LIST)
        assert _names(ws.next_payload("3")) == ["Ana", "Bob"]


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([{"type": "subscribe", "id": "1", "payload": {"query": LIST}}], 4401),  # before connection_init
        ([{"type": "connection_init", "payload": {"authorization": "Bearer bad"}}], 4401),
        ([{"type": "connection_init", "payload": {"x-role": "nobody"}}], 4403),
        ([{"type": "connection_init"}, {"type": "connection_init"}], 4429),
        ([{"type": "connection_init"}, {"type": "subscribe", "id": "1"}], 4400),
        ([{"type": "connection_init"}, {"type": "nonsense"}], 4400),
        ([{"no": "type"}], 4400),
        ([], 4408),  # nothing within init_timeout_s (1 s here)
    ],
)
def test_ws_close_codes(live: Live, messages: list[dict[str, Any]], code: int) -> None:
    with ws_client(live.base_url) as ws:
        for message in messages:
            ws.send(message)
        assert ws.closed_with()[0] == code


def test_ws_duplicate_id_closes_4409_and_bad_json_4400(live: Live) -> None:
    with ws_client(live.base_url) as ws:
        ws.init({"x-role": "admin"})
        ws.subscribe("1", LIST)
        ws.next_payload("1")
        ws.subscribe("1", LIST)
        assert ws.closed_with() == (4409, "Subscriber for 1 already exists")
    with ws_client(live.base_url) as ws:
        ws.ws.send("{not json")
        assert ws.closed_with()[0] == 4400


def test_ws_needs_the_subprotocol(live: Live) -> None:
    with pytest.raises(InvalidStatus) as refused, connect(live.base_url.replace("http", "ws", 1) + "/graphql"):
        pass
    assert refused.value.response.status_code == 403


def test_sse_streams_results(live: Live) -> None:
    headers = {"accept": "text/event-stream", "x-role": "admin"}
    with (
        httpx.Client(base_url=live.base_url, timeout=20) as http,
        http.stream("POST", "/graphql", json={"query": LIST}, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = SseReader(response)
        assert _names(events.next_payload()) == ["Ana", "Bob"]
        live.change("DELETE FROM employes WHERE id = 2")
        assert _names(events.next_payload()) == ["Ana"]


def test_sse_errors_and_single_results(live: Live) -> None:
    with httpx.Client(base_url=live.base_url, timeout=20) as http:
        headers = {"accept": "text/event-stream", "x-role": "admin"}
        with http.stream("GET", "/graphql", params={"query": "{ dept_by_pk(id: 1) { nom } }"}, headers=headers) as response:
            events = SseReader(response)
            assert events.next_payload() == {"data": {"dept_by_pk": {"nom": "R&D"}}}
            assert events.event() == ("complete", "")
        with http.stream("POST", "/graphql", json={"query": "subscription { nope }"}, headers=headers) as response:
            events = SseReader(response)
            assert events.next_payload()["errors"][0]["extensions"]["code"] == "validation-failed"
            assert events.event() == ("complete", "")
        refused = http.post("/graphql", json={"query": LIST}, headers={**headers, "x-role": "nobody"})
        assert refused.status_code == 403 and refused.json()["errors"][0]["extensions"]["code"] == "permission-denied"
        plain = http.post("/graphql", json={"query": LIST}, headers={"x-role": "admin"})
        assert plain.status_code == 400 and "WebSocket" in json.loads(plain.content)["errors"][0]["message"]


def test_the_schema_has_a_subscription_root_with_configured_names(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(db_url, DDL)
    raw = {
        "sources": [{"connection": "hr", "tables": ["*"]}],
        "operations": {"employes": {"subscription": "live_employes", "by_pk": "employe_par_id"}},
    }
    api = DataApi(msgspec.convert(raw, ApiSettings), {"hr": db_url}, None, HeaderGate())
    api.start(watch=False)
    try:
        state = api.state()
        subscription = state.schema.subscription_type
        assert subscription is not None
        assert {"live_employes", "employe_par_id", "employes_aggregate", "dept", "dept_by_pk"} <= set(subscription.fields)
        assert "employes" not in subscription.fields and "employes_page" not in subscription.fields
        assert "journal_by_pk" not in subscription.fields  # no primary key: no by-key field, as for queries
        assert state.roots[("subscription", "live_employes")] == RootField("list", "employes")
        assert subscription.fields["live_employes"].type == state.schema.query_type.fields["employes"].type  # type: ignore[union-attr]
    finally:
        api.close()


def test_graphiql_runs_subscriptions_over_sse_and_stops_them(live: Live, chromium: str) -> None:
    """The GraphiQL page's fetcher, in Chromium: a subscription streams each changed result over SSE, stopping
    it closes the stream on the server, and queries still go through GraphiQL's own fetcher."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live.base_url}/graphql")
            page.wait_for_selector(".graphiql-container", timeout=30_000)
            first = page.evaluate(
                """async (query) => {
                    window.live = fetcher({ query }, { headers: { "x-role": "admin" } });
                    return (await window.live.next()).value;
                }""",
                "# a comment naming a query\nsubscription Team { employes(where: {dept_id: {_eq: 1}}, order_by: [{id: asc}]) "
                "{ nom } }",
            )
            assert _names(first) == ["Ana", "Bob"]
            assert metric("sluice_api_subscriptions_active", table="employes", role="admin") == 1
            live.change("INSERT INTO employes (id, nom, dept_id) VALUES (12, 'Ugo', 1)")
            assert _names(page.evaluate("async () => (await window.live.next()).value")) == ["Ana", "Bob", "Ugo"]
            page.evaluate("async () => { await window.live.return(); }")  # GraphiQL's stop button
            wait_for(lambda: metric("sluice_api_subscriptions_active", table="employes", role="admin") == 0, 30, "closed")
            answer = page.evaluate(  # GraphiQL's fetcher answers as an async iterable too (incremental delivery)
                """async () => {
                    const answer = await fetcher({ query: "{ dept_by_pk(id: 1) { nom } }" }, { headers: { "x-role": "admin" } });
                    return Symbol.asyncIterator in answer ? (await answer.next()).value : answer;
                }"""
            )
            assert answer == {"data": {"dept_by_pk": {"nom": "R&D"}}}
            refused = page.evaluate(
                """async () => {
                    const it = fetcher({ query: "subscription { employes { id } }" }, { headers: { "x-role": "nobody" } });
                    return (await it.next()).value;
                }"""
            )
            assert refused["errors"][0]["extensions"]["code"] == "permission-denied"  # the gate's 403, as JSON
            assert not errors
        finally:
            browser.close()
