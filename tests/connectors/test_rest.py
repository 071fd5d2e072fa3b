"""The REST source against a live local API: every pagination style, faults, schema drift, auth, parent/child."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.connectors.rest_server import PAGE, FakeApi

from sluice.connectors import progress
from sluice.connectors.base import SourceContext
from sluice.connectors.registry import open_source
from sluice.errors import ConfigError, TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin, SourceSpec

LABEL = "object 1001 (things)"
RECORDS = [{"id": i, "name": f"thing {i}", "updated_at": f"2024-01-{i:02d}T00:00:00Z"} for i in range(1, 26)]
FAST = {"attempts": 4, "backoff_s": 0.01, "max_backoff_s": 0.02}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi([dict(record) for record in RECORDS])
    yield server
    server.close()


def read(api: FakeApi, connections: dict[str, ConnectionSpec] | None = None, **options: Any) -> pa.Table:
    if "connection" not in options:
        options.setdefault("base_url", api.url)
    options.setdefault("retries", FAST)
    source = open_source(SourceSpec("rest", options), SourceContext(Path("."), connections or {}, label=LABEL))
    return source.read().read_all()


STYLES = [
    ("/offset", "data.items", {"style": "offset", "limit": PAGE, "total_path": "meta.total"}, 3),
    ("/offset-open", "data.items", {"style": "offset", "limit": PAGE}, 4),
    ("/pages", "results", {"style": "page_number", "page_size": PAGE, "total_path": "total_pages"}, 3),
    ("/pages-open", "results", {"style": "page_number"}, 4),
    ("/cursor", "items", {"style": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}, 3),
    ("/link", "", {"style": "header_link"}, 3),
    ("/next", "items", {"style": "json_link", "next_url_path": "next"}, 3),
]


@pytest.mark.parametrize(("path", "records", "paginate", "requests"), STYLES, ids=[s[2]["style"] + s[0] for s in STYLES])
def test_each_pagination_style_reads_every_record_once_and_stops(
    api: FakeApi, path: str, records: str, paginate: dict[str, Any], requests: int
) -> None:
    table = read(api, path=path, records=records, paginate=paginate)
    assert table.column("id").to_pylist() == list(range(1, 26))
    assert table.schema.field("id").type == pa.int64()
    # with a total the last page is known; without one an empty page ends the walk
    assert len(api.requests_to(path)) == requests


def test_offset_and_page_parameters_are_sent_with_the_endpoint_params(api: FakeApi) -> None:
    read(api, path="/offset", records="data.items", params={"status": "active"}, paginate={"style": "offset", "limit": 10})
    assert api.requests_to("/offset")[:2] == [
        {"status": "active", "offset": "0", "limit": "10"},
        {"status": "active", "offset": "10", "limit": "10"},
    ]


def test_a_rate_limit_still_reads_everything(api: FakeApi) -> None:
    table = read(api, path="/next", records="items", paginate={"style": "json_link"}, rate_limit=500.0)
    assert table.num_rows == 25


def test_single_page_and_max_pages(api: FakeApi) -> None:
    assert read(api, path="/link").num_rows == PAGE
    assert len(api.requests_to("/link")) == 1
    assert read(api, path="/cursor", records="items", paginate={"style": "cursor"}, max_pages=2).num_rows == 2 * PAGE


@pytest.mark.parametrize(("paginate", "what"), [("json_link", "next page URL '.*/loop'"), ("cursor", "cursor 'again'")])
def test_a_next_link_or_cursor_given_again_is_an_error_not_an_endless_loop(api: FakeApi, paginate: str, what: str) -> None:
    message = rf"object 1001 \(things\): GET .*/loop.* \(page 2\): the {what} was already followed"
    with pytest.raises(TerminalError, match=message):
        read(api, path="/loop", records="items", paginate={"style": paginate})
    assert len(api.requests_to("/loop")) == 2


def test_an_empty_first_page_gives_no_rows(api: FakeApi) -> None:
    api.records = []
    table = read(api, path="/offset", records="data.items", paginate={"style": "offset"})
    assert table.num_rows == 0
    typed = read(api, path="/offset", records="data.items", paginate={"style": "offset"}, column_types={"id": "int64"})
    assert typed.schema == pa.schema([("id", pa.int64())])


def test_records_that_are_not_objects_name_the_path(api: FakeApi) -> None:
    with pytest.raises(
        TerminalError, match=r"object 1001 \(things\): GET .*/offset.* at 'meta.total' are not a list of objects \(found: int\)"
    ):
        read(api, path="/offset", records="meta.total")


# --- faults --------------------------------------------------------------------------------------------------


def test_429_with_retry_after_and_500s_are_retried(api: FakeApi) -> None:
    api.faults["/cursor"] = [
        (429, {"Retry-After": "0"}),
        (500, {}),
        (503, {}),
        (429, {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}),
    ]
    table = read(api, path="/cursor", records="items", paginate={"style": "cursor"}, retries={**FAST, "attempts": 5})
    assert table.num_rows == 25
    assert len(api.requests_to("/cursor")) == 3 + 4


def test_a_timeout_is_retried(api: FakeApi) -> None:
    api.slow_s = 1.0
    api.faults["/next"] = ["timeout"]
    table = read(api, path="/next", records="items", paginate={"style": "json_link"}, timeout_s=0.2)
    assert table.num_rows == 25


def test_retries_run_out_as_a_transient_error(api: FakeApi) -> None:
    api.faults["/offset"] = [(500, {})] * 3
    with pytest.raises(TransientError, match=r"object 1001 \(things\): GET http://127.0.0.1:\d+/offset\?.* answered 500 3 times"):
        read(api, path="/offset", records="data.items", paginate={"style": "offset"}, retries={**FAST, "attempts": 3})


def test_one_attempt_is_said_in_the_singular(api: FakeApi) -> None:
    api.faults["/offset"] = [(500, {})]
    with pytest.raises(TransientError, match=r"/offset answered 500 1 time \(retries exhausted\)$"):
        read(api, path="/offset", retries={**FAST, "attempts": 1})
    api.faults["/offset"] = ["timeout"]
    api.slow_s = 1.0
    with pytest.raises(TransientError, match=r"/offset failed 1 time, last: ReadTimeout"):
        read(api, path="/offset", retries={**FAST, "attempts": 1}, timeout_s=0.2)


def test_a_retry_after_longer_than_allowed_fails_the_attempt(api: FakeApi) -> None:
    api.faults["/offset"] = [(429, {"Retry-After": "3600"})]
    with pytest.raises(TransientError, match=r"Retry-After 3600 s, longer than retries\.max_retry_after_s"):
        read(api, path="/offset", records="data.items", retries={**FAST, "max_retry_after_s": 60})


def test_a_4xx_is_terminal_at_once_naming_object_url_and_status(api: FakeApi) -> None:
    with pytest.raises(TerminalError, match=r"^object 1001 \(things\): GET http://127.0.0.1:\d+/nowhere answered 404 Not Found"):
        read(api, path="/nowhere")
    assert len(api.requests_to("/nowhere")) == 1


# --- schema -------------------------------------------------------------------------------------------------


def test_schema_grows_over_pages_new_fields_nullable_and_types_widened(api: FakeApi) -> None:
    api.drift = [
        [{"id": 1, "score": 1, "note": None, "address": {"city": "Oslo"}}],
        [{"id": 2, "score": 2.5, "note": "hi", "address": {"city": "Rome", "zip": "00100"}, "tags": ["a"]}],
        [{"id": 3}],
    ]
    table = read(api, path="/drift", records="items", paginate={"style": "page_number"})
    assert table.schema.field("score").type == pa.float64()
    assert table.schema.field("note").type == pa.string()
    assert table.schema.field("tags").type == pa.list_(pa.string())
    assert table.schema.field("address").type == pa.struct([("city", pa.string()), ("zip", pa.string())])
    assert table.to_pylist() == [
        {"id": 1, "score": 1.0, "note": None, "address": {"city": "Oslo", "zip": None}, "tags": None},
        {"id": 2, "score": 2.5, "note": "hi", "address": {"city": "Rome", "zip": "00100"}, "tags": ["a"]},
        {"id": 3, "score": None, "note": None, "address": None, "tags": None},
    ]


def test_a_type_change_between_pages_is_a_clear_error_and_column_types_fixes_it(api: FakeApi) -> None:
    api.drift = [[{"id": 1, "code": 7}], [{"id": 2, "code": "A-7"}]]
    with pytest.raises(TerminalError, match=r"object 1001 \(things\): a field changes type between pages .*code.*column_types"):
        read(api, path="/drift", records="items", paginate={"style": "page_number"})
    table = read(api, path="/drift", records="items", paginate={"style": "page_number"}, column_types={"code": "string"})
    assert table.column("code").to_pylist() == ["7", "A-7"]


def test_mixed_kinds_on_one_page_name_the_field(api: FakeApi) -> None:
    api.drift = [[{"id": 1, "code": 7}, {"id": 2, "code": "x"}]]
    with pytest.raises(TerminalError, match=r"field 'code' holds number and string values on one page; declare it"):
        read(api, path="/drift", records="items", paginate={"style": "page_number"})


def test_an_integer_past_64_bits_is_a_clear_error_and_column_types_fixes_it(api: FakeApi) -> None:
    """A new user's trial: ``18446744073709551615`` gave a bare ``OverflowError: Python int too large to convert to C long``."""
    api.drift = [[{"id": 1, "big": 7}, {"id": 2, "big": 18446744073709551615}]]
    with pytest.raises(
        TerminalError,
        match=r"^object 1001 \(things\): field 'big' holds an integer outside the 64-bit range \(18446744073709551615\); "
        r"declare it with column_types: \{big: string\} .* or \{big: 'decimal128\(38, 0\)'\}$",
    ):
        read(api, path="/drift", records="items", paginate={"style": "page_number"})
    table = read(api, path="/drift", records="items", paginate={"style": "page_number"}, column_types={"big": "string"})
    assert table.column("big").to_pylist() == ["7", "18446744073709551615"]
    table = read(
        api, path="/drift", records="items", paginate={"style": "page_number"}, column_types={"big": "decimal128(38, 0)"}
    )
    assert table.schema.field("big").type == pa.decimal128(38, 0)
    assert [int(v) for v in table.column("big").to_pylist()] == [7, 18446744073709551615]


def test_after_the_schema_is_fixed_a_new_field_fails(api: FakeApi) -> None:
    api.drift = [[{"id": 1}], [{"id": 2, "late": True}]]
    with pytest.raises(TerminalError, match=r"a page has new fields late after the schema was fixed"):
        read(api, path="/drift", records="items", paginate={"style": "page_number"}, schema_buffer_bytes=0)
    api.drift = [[{"id": 1}], [{"id": 2}], [{"id": 3, "late": None}]]
    table = read(api, path="/drift", records="items", paginate={"style": "page_number"}, schema_buffer_bytes=0)
    assert table.column("id").to_pylist() == [1, 2, 3]


# --- auth ---------------------------------------------------------------------------------------------------


def test_bearer_token_from_the_environment(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.auth = ("bearer", "s3cret")
    with pytest.raises(TerminalError, match="answered 401 Unauthorized; check the source's auth"):
        read(api, path="/link")
    with pytest.raises(TerminalError, match="environment variable API_TOKEN, which is not set"):
        read(api, path="/link", auth={"type": "bearer", "token_env": "API_TOKEN"})
    monkeypatch.setenv("API_TOKEN", "s3cret")
    assert read(api, path="/link", auth={"type": "bearer", "token_env": "API_TOKEN"}).num_rows == PAGE


def test_api_key_in_a_header(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.auth = ("header", "X-Api-Key", "k-123")
    monkeypatch.setenv("SHOP_KEY", "k-123")
    table = read(
        api, path="/next", records="items", paginate={"style": "json_link"}, auth={"type": "api_key", "key_env": "SHOP_KEY"}
    )
    assert table.num_rows == 25


def test_api_key_in_the_query_is_never_shown(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.auth = ("query", "api_key", "k-456")
    monkeypatch.setenv("SHOP_KEY", "k-456")
    auth = {"type": "api_key", "location": "query", "name": "api_key", "key_env": "SHOP_KEY"}
    assert read(api, path="/link", paginate={"style": "header_link"}, auth=auth).num_rows == 25
    api.faults["/offset"] = [(403, {})]
    with pytest.raises(TerminalError) as caught:
        read(api, path="/offset", records="data.items", params={"q": "x"}, auth=auth)
    assert "k-456" not in str(caught.value) and "api_key" not in str(caught.value)
    assert "/offset?q=x" in str(caught.value) and "403 Forbidden" in str(caught.value)


def test_basic_auth_from_the_environment_and_from_a_connection(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.auth = ("basic", "ana", "p@ss word")
    monkeypatch.setenv("API_PASSWORD", "p@ss word")
    basic = {"type": "basic", "username": "ana", "password_env": "API_PASSWORD"}
    assert read(api, path="/link", auth=basic).num_rows == PAGE
    host = api.url.removeprefix("http://")
    connections = {"shop": ConnectionSpec("shop", f"http://ana:p%40ss%20word@{host}", Origin("sluice.yaml", 3))}
    api.faults["/link"] = [(500, {})] * 4
    with pytest.raises(TransientError) as caught:
        read(api, connections, connection="shop", path="/link", auth={"type": "basic"})
    assert "ana" not in str(caught.value) and "p%40ss" not in str(caught.value)
    assert read(api, connections, connection="shop", path="/link", auth={"type": "basic"}).num_rows == PAGE


def test_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="give either 'base_url' or 'connection'"):
        SourceSpec("rest", {"path": "/x"})
    with pytest.raises(ConfigError, match="placeholders"):
        SourceSpec("rest", {"base_url": "http://h", "path": "/customers/{id}/orders"})
    with pytest.raises(ConfigError):
        SourceSpec("rest", {"base_url": "http://h", "paginate": {"style": "offsett"}})


@pytest.mark.parametrize(("auth", "name"), [("bearer", "token_env"), ("api_key", "key_env"), ("basic", "password_env")])
def test_auth_without_a_secret_is_refused_when_no_connection_can_give_one(auth: str, name: str) -> None:
    """A new user's trial: ``auth: {type: bearer}`` with a ``base_url`` passed validation and failed at run time."""
    with pytest.raises(ConfigError, match=f"auth {auth}: no secret: set auth.{name}"):
        SourceSpec("rest", {"base_url": "http://h", "path": "/x", "auth": {"type": auth}})
    SourceSpec("rest", {"base_url": "http://h", "path": "/x", "auth": {"type": auth, name: "API_SECRET"}})


# --- parent / child -----------------------------------------------------------------------------------------


def test_parent_child_fetches_each_parents_children_with_its_key(api: FakeApi) -> None:
    api.customers = [{"id": 1, "name": "Ana"}, {"id": 2, "name": "Bo"}, {"id": 3, "name": "Cy"}]
    api.orders = {1: [{"order": 10, "total": 5.0}, {"order": 11, "total": 7.5}], 3: [{"order": 30, "total": 1.0}]}
    table = read(
        api,
        path="/customers/{id}/orders",
        parent={"path": "/customers", "records": "customers", "keys": {"customer_id": "id"}},
    )
    assert table.to_pylist() == [
        {"order": 10, "total": 5.0, "customer_id": 1},
        {"order": 11, "total": 7.5, "customer_id": 1},
        {"order": 30, "total": 1.0, "customer_id": 3},
    ]
    assert [path for path, _, _ in api.log] == ["/customers", "/customers/1/orders", "/customers/2/orders", "/customers/3/orders"]


def test_column_types_apply_to_a_parent_key_column(api: FakeApi) -> None:
    """A new user's trial: parent ids ``1, 2, "x/y"`` failed "a field changes type between pages" though declared."""
    api.customers = [{"id": 1}, {"id": 2}, {"id": "x/y"}]
    api.orders = {1: [{"order": 10}], 2: [], "x/y": [{"order": 30}, {"order": 31}]}
    options: dict[str, Any] = {
        "path": "/customers/{id}/orders",
        "parent": {"path": "/customers", "records": "customers", "keys": {"customer_id": "id"}},
    }
    with pytest.raises(TerminalError, match=r"a field changes type between pages .*customer_id"):
        read(api, **options)
    table = read(api, column_types={"customer_id": "string"}, **options)
    assert table.schema.field("customer_id").type == pa.string()
    assert table.to_pylist() == [
        {"order": 10, "customer_id": "1"},
        {"order": 30, "customer_id": "x/y"},
        {"order": 31, "customer_id": "x/y"},
    ]
    api.customers = [{"id": 1}, {"id": 2}]
    api.orders = {1: [{"order": 10}], 2: [{"order": 20}]}
    table = read(api, column_types={"customer_id": "int32"}, **options)
    assert table.schema.field("customer_id").type == pa.int32()
    assert table.column("customer_id").to_pylist() == [1, 2]


CONCURRENT = [
    ("/offset", "data.items", {"style": "offset", "limit": PAGE, "total_path": "meta.total", "concurrency": 3}),
    ("/offset-open", "data.items", {"style": "offset", "limit": PAGE, "concurrency": 3}),
    ("/pages", "results", {"style": "page_number", "page_size": PAGE, "total_path": "total_pages", "concurrency": 2}),
    ("/pages-open", "results", {"style": "page_number", "concurrency": 4}),
]


@pytest.mark.parametrize(("path", "records", "paginate"), CONCURRENT, ids=[c[0] for c in CONCURRENT])
def test_concurrent_pages_arrive_in_order_and_stop_by_the_same_rules(
    api: FakeApi, path: str, records: str, paginate: dict[str, Any]
) -> None:
    api.faults[path] = [(500, {}), (503, {})]
    table = read(api, path=path, records=records, paginate=paginate)
    assert table.column("id").to_pylist() == list(range(1, 26))
    requests = len(api.requests_to(path)) - 2  # the two injected faults were retried
    if "total_path" in paginate:
        assert requests == 3
    else:
        assert 4 <= requests <= 3 + paginate["concurrency"]


def test_concurrent_pages_keep_max_pages(api: FakeApi) -> None:
    paginate = {"style": "offset", "limit": 5, "concurrency": 4}
    table = read(api, path="/offset-open", records="data.items", paginate=paginate, max_pages=2)
    assert table.column("id").to_pylist() == list(range(1, 11))
    assert len(api.requests_to("/offset-open")) == 2


def test_httpx_request_log_lines_leave_out_the_query_key(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api.auth = ("query", "token", "k-789")
    monkeypatch.setenv("SHOP_KEY", "k-789")
    auth = {"type": "api_key", "location": "query", "name": "token", "key_env": "SHOP_KEY"}
    with caplog.at_level("INFO", logger="httpx"):
        assert read(api, path="/link", params={"q": "x"}, auth=auth).num_rows == PAGE
    lines = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert lines and all("k-789" not in line for line in lines)
    assert "/link?q=x" in lines[0]


def test_a_connection_that_is_not_http_is_refused_by_validate_at_its_line(tmp_path: Path) -> None:
    """A new user's trial: a postgresql:// connection was retried as a transient failure at run time."""
    from sluice.project.load import parse_project

    path = tmp_path / "sluice.yaml"
    path.write_text(
        "connections: {dw: 'postgresql://u@127.0.0.1/db', api: 'https://api.example.com'}\n"
        "objects:\n"
        "  - id: 1001\n"
        "    name: items\n"
        "    source: {type: rest, connection: dw, path: /items}\n"
        "  - {id: 1002, name: other, source: {type: rest, connection: api, path: /items}}\n",
        encoding="utf-8",
    )
    _, problems = parse_project(path, ahead=True)
    assert [str(p) for p in problems] == [
        f"{path}:5: object 1001 (items): connection 'dw' is postgresql://; a rest source needs a http:// or https:// connection"
    ]


def test_an_envelope_taken_as_one_record_is_refused_on_offset_pagination(api: FakeApi) -> None:
    """``records: ''`` on an endpoint answering ``{"data": ..., "meta": ...}``: every page would be one non-empty
    "record" and offset pagination would never stop (a new user's trial saw 600,000 requests); it is refused at
    the first page, naming the body's keys."""
    with pytest.raises(TerminalError, match=r"the response is an object, not a list of records \(its keys: data\)"):
        read(api, path="/offset-open", paginate={"style": "offset", "limit": PAGE})
    assert len(api.requests_to("/offset-open")) == 1


def test_a_records_path_not_in_the_response_is_an_error_not_zero_rows(api: FakeApi) -> None:
    with pytest.raises(TerminalError, match=r"the response has no 'data.itemz' \(its keys: data, meta\); set 'records'"):
        read(api, path="/offset", records="data.itemz", paginate={"style": "offset", "limit": PAGE})


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/customers/{id/orders", r"a \{placeholder\} is not closed"),
        ("/orders", r"has no \{placeholder\}: every parent record would fetch the same URL"),
    ],
)
def test_a_child_path_must_name_a_parent_field(api: FakeApi, path: str, message: str) -> None:
    """A new user's trial: ``/customers/{id/orders`` passed validation and fetched one URL per parent record."""
    with pytest.raises(ConfigError, match=message):
        read(api, path=path, parent={"path": "/customers", "records": ""})


def test_a_long_read_logs_its_pages_records_and_bytes_as_it_goes_and_at_its_end(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)  # every page is "a few seconds" later
    with caplog.at_level("WARNING", logger="sluice.progress"):
        read(api, path="/offset", records="data.items", paginate={"style": "offset", "limit": PAGE, "total_path": "meta.total"})
    lines = [record.getMessage() for record in caplog.records if record.name == "sluice.progress"]
    counts = [
        re.fullmatch(
            rf"{re.escape(LABEL)}: (\d+) pages?, (\d+) records, (\d+(?:\.\d)?) (B|kB) from the API in \d+ s( so far)?", line
        )
        for line in lines
    ]
    assert all(counts), lines
    assert [(int(m[1]), int(m[2]), bool(m[5])) for m in counts if m] == [
        (1, 10, True),
        (2, 20, True),
        (3, 25, True),
        (3, 25, False),
    ]
    received = [float(m[3]) * (1000 if m[4] == "kB" else 1) for m in counts if m]
    assert received[0] > 0 and received == sorted(received) and received[1] > received[0]


def test_a_short_read_logs_no_progress(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="sluice.progress"):
        assert read(api, path="/next", records="items", paginate={"style": "json_link", "next_url_path": "next"}).num_rows == 25
    assert [record for record in caplog.records if record.name == "sluice.progress"] == []


# --- credentials stay with the base URL's origin -------------------------------------------------------------

HOME_AUTH = {
    "bearer": (("bearer", "pw"), {"type": "bearer"}),
    "api_key header": (("header", "X-API-Key", "pw"), {"type": "api_key", "name": "X-API-Key"}),
    "api_key query": (("query", "api_key", "pw"), {"type": "api_key", "location": "query", "name": "api_key"}),
    "basic": (("basic", "u", "pw"), {"type": "basic"}),
}


@pytest.mark.parametrize("other_host", ["127.0.0.2", "127.0.0.1"], ids=["other host", "other port"])
@pytest.mark.parametrize("kind", list(HOME_AUTH))
def test_credentials_go_only_to_the_base_urls_origin_not_to_next_links_or_redirects_elsewhere(
    api: FakeApi, kind: str, other_host: str
) -> None:
    """A new user's trial: a next link and a 302 to another host got ``Authorization: Bearer pw`` / ``X-API-Key: pw``."""
    server_auth, auth = HOME_AUTH[kind]
    api.auth = server_auth  # the home origin answers 401 without the credential
    other = FakeApi([], host=other_host)
    try:
        api.canned["/start"] = {"records": [{"id": 1}], "next": "/second"}
        api.canned["/second"] = {"records": [{"id": 2}], "next": f"{other.url}/evil"}
        other.canned["/evil"] = {"records": [{"id": 3}], "next": f"{api.url}/redir"}
        api.faults["/redir"] = [(302, {"Location": f"{other.url}/evil2"})]
        other.canned["/evil2"] = {"records": [{"id": 4}], "next": f"{api.url}/last"}
        api.canned["/last"] = {"records": [{"id": 5}], "next": None}
        host = api.url.removeprefix("http://")
        connections = {"api": ConnectionSpec("api", f"http://u:pw@{host}", Origin("sluice.yaml", 3))}
        table = read(
            api, connections, connection="api", path="/start", records="records", paginate={"style": "json_link"}, auth=auth
        )
    finally:
        other.close()
    assert table.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert [path for path, _, _ in other.log] == ["/evil", "/evil2"]
    for _, query, headers in other.log:
        assert "authorization" not in headers and "x-api-key" not in headers and "api_key" not in query
        assert not any("pw" in value for value in [*query.values(), *headers.values()]), (query, headers)
    assert [path for path, _, _ in api.log] == ["/start", "/second", "/redir", "/last"]
    assert all(api.authorised(query, headers) for _, query, headers in api.log)
