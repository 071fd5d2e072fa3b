"""Walk the pages of one endpoint: find the records in each body and the request for the next page.

Styles and their stop rules (names from dlt's paginators; :mod:`sluice.connectors.rest_options`):

=============== ============================================ ==========================================
style           next request                                 stops when
=============== ============================================ ==========================================
``offset``      ``offset += limit``                          empty page, or offset >= ``total_path``
``page_number`` ``page += 1``                                empty page, or past ``total_path`` pages
``cursor``      ``cursor_param`` = body at ``cursor_path``   the cursor is missing, null or ""
``header_link`` the ``Link`` header's ``rel="next"`` URL     no such link (RFC 8288)
``json_link``   the URL at ``next_url_path`` (may be         the URL is missing, null or ""
                relative to the page's URL)
``single_page`` none                                         after the first page
=============== ============================================ ==========================================

``max_pages`` stops any style. A cursor or next URL given a second time is a TerminalError (the pages would loop
for ever). A body whose records are not a list of objects is a TerminalError naming the
object, the URL and the path.

>>> find({"data": {"items": [1]}}, "data.items")
[1]
>>> find([1, 2], "") is not None
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import msgspec

from sluice.connectors.rest_http import HttpClient, shown_url
from sluice.connectors.rest_options import (
    CursorPages,
    HeaderLinkPages,
    JsonLinkPages,
    OffsetPages,
    PageNumberPages,
    Paginate,
    SinglePage,
)
from sluice.errors import TerminalError

_MISSING = object()


def find(body: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``body`` (``""`` is the body itself), or None when a step is missing."""
    value = lookup(body, path)
    return None if value is _MISSING else value


def lookup(body: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``body`` (``""`` is the body itself), or ``_MISSING`` when a step is missing."""
    if not path:
        return body
    value = body
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def records_in(body: Any, path: str, where: str, url: str, *, paginated: bool = False) -> list[dict[str, Any]]:
    """The list of record objects at ``path``; one object alone counts as one record; null as none.

    Raises TerminalError when ``path`` is not in the body (a typo would otherwise load nothing), when the value
    there is something else (a string, a list of numbers), and, on a ``paginated`` endpoint, when the body itself
    (``records: ''``) is an object: an envelope (``{"data": [...], "meta": ...}``) taken as one record would make
    every page non-empty, and offset or page-number pagination would never stop.
    """
    found = lookup(body, path)
    keys = f" (its keys: {', '.join(list(body)[:10])})" if isinstance(body, dict) else ""
    if found is _MISSING:
        raise TerminalError(f"{where}: GET {url}: the response has no {path!r}{keys}; set 'records' to the records' path")
    if found is None:
        return []
    if isinstance(found, dict):
        if paginated and not path:
            raise TerminalError(
                f"{where}: GET {url}: the response is an object, not a list of records{keys}; "
                "set 'records' to the path of its list (e.g. records: data.items)"
            )
        return [found]
    if isinstance(found, list) and all(isinstance(item, dict) for item in found):
        return found
    at = f"at {path!r}" if path else "at the root (records: '')"
    kind = type(found).__name__ if not isinstance(found, list) else "list of non-objects"
    raise TerminalError(f"{where}: GET {url}: the records {at} are not a list of objects (found: {kind}){keys}; set 'records'")


def decode(response: httpx.Response, where: str, url: str) -> Any:
    """The JSON body of ``response``; TerminalError naming the URL when it is not JSON."""
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError as exc:
        kind = response.headers.get("content-type", "no content type")
        raise TerminalError(f"{where}: GET {url}: the response is not JSON ({kind}): {exc}") from None


def pages(
    client: HttpClient,
    url: str,
    params: Mapping[str, Any],
    paginate: Paginate,
    records: str,
    max_pages: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The records of each page of ``url`` in order (an empty list for an empty last page is not yielded)."""
    if isinstance(paginate, OffsetPages | PageNumberPages) and paginate.concurrency > 1:
        yield from numbered_pages(client, url, params, paginate, records, max_pages)
        return
    query = dict(params)
    next_url = url
    if isinstance(paginate, OffsetPages):
        offset = paginate.offset
        query.update({paginate.offset_param: offset, paginate.limit_param: paginate.limit})
    elif isinstance(paginate, PageNumberPages):
        page = paginate.base_page
        query[paginate.page_param] = page
        if paginate.page_size is not None:
            query[paginate.page_size_param] = paginate.page_size
    count = 0
    seen: set[str] = set()  # the cursors / next URLs followed: one given again would loop for ever
    while True:
        response = client.get(next_url, query)
        shown = shown_url(response.request.url, client.creds.secret_params)
        body = decode(response, client.where, shown)
        found = records_in(body, records, client.where, shown, paginated=not isinstance(paginate, SinglePage))
        count += 1
        if found:
            yield found
        if max_pages is not None and count >= max_pages:
            return
        if isinstance(paginate, OffsetPages):
            offset += paginate.limit
            total = _number(body, paginate.total_path, client.where, shown)
            if not found or (total is not None and offset >= total):
                return
            query[paginate.offset_param] = offset
        elif isinstance(paginate, PageNumberPages):
            total = _number(body, paginate.total_path, client.where, shown)
            last = total is not None and page - paginate.base_page + 1 >= total
            if not found or last:
                return
            page += 1
            query[paginate.page_param] = page
        elif isinstance(paginate, CursorPages):
            cursor = find(body, paginate.cursor_path)
            if cursor in (None, "") or isinstance(cursor, bool):
                return
            _check_new(seen, str(cursor), "cursor", count, client.where, shown)
            query[paginate.cursor_param] = cursor
        elif isinstance(paginate, HeaderLinkPages | JsonLinkPages):
            if isinstance(paginate, HeaderLinkPages):
                link = response.links.get(paginate.rel, {}).get("url")
            else:
                link = find(body, paginate.next_url_path)
            if not link or not isinstance(link, str):
                return
            # The next URL carries its own query (and the auth's query key again, added by the client).
            next_url = str(response.request.url.join(link))
            _check_new(seen, next_url, "next page URL", count, client.where, shown)
            query = {}
        else:
            return


def _check_new(seen: set[str], given: str, what: str, page: int, where: str, url: str) -> None:
    """Remember ``given`` (a cursor or next URL); TerminalError when it was followed already: the API's pagination
    loops (as dlt and Airbyte detect it), and following it would read the same pages for ever."""
    if given in seen:
        raise TerminalError(
            f"{where}: GET {url} (page {page}): the {what} {given!r} was already followed, so its pagination loops; "
            "nothing was written: fix the API or the object's paginate (or set max_pages to read a fixed number of pages)"
        )
    seen.add(given)


def _number(body: Any, path: str | None, where: str, url: str) -> int | None:
    """The whole number at ``path`` in ``body`` (None when no path or no value); TerminalError when not a number."""
    if path is None:
        return None
    value = find(body, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TerminalError(f"{where}: GET {url}: the total at {path!r} is {value!r}, not a number")
    try:
        return int(value)
    except ValueError:
        raise TerminalError(f"{where}: GET {url}: the total at {path!r} is {value!r}, not a number") from None


def numbered_pages(
    client: HttpClient,
    url: str,
    params: Mapping[str, Any],
    paginate: OffsetPages | PageNumberPages,
    records: str,
    max_pages: int | None,
) -> Iterator[list[dict[str, Any]]]:
    """Offset or page-number pages fetched ``paginate.concurrency`` at a time in threads, yielded in page order.

    Page ``i``'s parameters are known in advance; the same stop rules hold (the first empty page, the total
    once a page has told it, ``max_pages``); requests already sent past the end are discarded.
    """
    last: int | None = max_pages  # pages to request in all, once known

    def query(index: int) -> dict[str, Any]:
        page = dict(params)
        if isinstance(paginate, OffsetPages):
            page.update({paginate.offset_param: paginate.offset + index * paginate.limit, paginate.limit_param: paginate.limit})
        else:
            page[paginate.page_param] = paginate.base_page + index
            if paginate.page_size is not None:
                page[paginate.page_size_param] = paginate.page_size
        return page

    def fetch(index: int) -> tuple[list[dict[str, Any]], int | None]:
        response = client.get(url, query(index))
        shown = shown_url(response.request.url, client.creds.secret_params)
        body = decode(response, client.where, shown)
        total = _number(body, paginate.total_path, client.where, shown)
        if total is not None and isinstance(paginate, OffsetPages):
            total = -(-(total - paginate.offset) // paginate.limit)  # pages from the first offset
        return records_in(body, records, client.where, shown, paginated=True), total

    pending: deque[Future[tuple[list[dict[str, Any]], int | None]]] = deque()
    with ThreadPoolExecutor(paginate.concurrency, thread_name_prefix="sluice-rest") as pool:
        try:
            sent = done = 0
            while True:
                while len(pending) < paginate.concurrency and (last is None or sent < last):
                    pending.append(pool.submit(fetch, sent))
                    sent += 1
                if not pending or (last is not None and done >= last):
                    return
                found, total = pending.popleft().result()
                done += 1
                if total is not None:
                    last = total if last is None else min(last, total)
                if not found:
                    return
                yield found
        finally:
            for future in pending:
                future.cancel()
