"""Request and response headers in PostgREST's conventions: ``Prefer``, ``Range``/``Range-Unit``,
``Content-Range``, ``Accept`` (RFC 7240 for Prefer, RFC 7233 for ranges)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sluice.api.rest.errors import MEDIA, RestError

JSON = "application/json"
CSV = "text/csv"
OBJECT = "application/vnd.pgrst.object+json"
OPENAPI = "application/openapi+json"
RANGE = re.compile(r"^\s*(?:items[= ])?\s*(\d{1,18})-(\d{0,18})\s*$")


@dataclass(frozen=True, slots=True)
class Prefer:
    """The ``Prefer`` header's known preferences (unknown ones are ignored, as RFC 7240 asks).

    ``count``: ``exact`` | ``planned`` | ``estimated`` | ``None``; ``ret``: ``representation`` | ``minimal`` |
    ``headers-only`` | ``None`` (the method's default); ``resolution``: ``merge-duplicates`` |
    ``ignore-duplicates`` | ``None``; ``missing``: ``default`` (absent keys take the column default) or ``None`` (null).
    """

    count: str | None = None
    ret: str | None = None
    resolution: str | None = None
    missing: str | None = None

    def applied(self) -> str:
        """The ``Preference-Applied`` value naming what was honoured."""
        parts = []
        if self.count:
            parts.append(f"count={self.count}")
        if self.ret:
            parts.append(f"return={self.ret}")
        if self.resolution:
            parts.append(f"resolution={self.resolution}")
        if self.missing:
            parts.append(f"missing={self.missing}")
        return ", ".join(parts)


ALLOWED = {
    "count": {"exact", "planned", "estimated"},
    "return": {"representation", "minimal", "headers-only"},
    "resolution": {"merge-duplicates", "ignore-duplicates"},
    "missing": {"default", "null"},
}


def parse_prefer(values: list[str]) -> Prefer:
    """The :class:`Prefer` of every ``Prefer`` header value (comma-separated ``key=value`` items)."""
    found: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            key, _, val = item.strip().partition("=")
            key, val = key.strip().lower(), val.strip().lower()
            if key in ALLOWED and val in ALLOWED[key]:
                found[key] = val
    missing = found.get("missing")
    return Prefer(found.get("count"), found.get("return"), found.get("resolution"), None if missing == "null" else missing)


def parse_range(headers: Mapping[str, str]) -> tuple[int, int | None] | None:
    """``Range: 0-19`` (``Range-Unit: items``) -> ``(offset, limit)``; ``5-`` -> ``(5, None)``; absent or in
    another unit -> ``None``. A malformed or reversed range is a 416 ``SLR103``."""
    text = headers.get("range")
    if not text:
        return None
    unit = headers.get("range-unit", "items").strip().lower()
    if unit != "items" or text.strip().lower().startswith("bytes"):
        return None
    match = RANGE.match(text)
    if not match:
        raise RestError(f"Range {text!r} is not first-last in items", status=416, code="SLR103")
    first, last = int(match[1]), match[2]
    if last == "":
        return first, None
    if int(last) < first:
        raise RestError(f"Range {text!r} ends before it starts", status=416, code="SLR103")
    return first, int(last) - first + 1


def content_range(offset: int, rows: int, total: int | None) -> str:
    """PostgREST's ``Content-Range``: ``0-24/3573``, ``0-24/*`` without a count, ``*/0`` when empty."""
    size = "*" if total is None else str(total)
    if rows == 0:
        return f"*/{size}"
    return f"{offset}-{offset + rows - 1}/{size}"


def accepted(accept: str | None, *, allow: tuple[str, ...] = (JSON, CSV, OBJECT)) -> str:
    """The media type to answer with among ``allow`` (first match by ``q`` order); 406 ``SLR107`` when none."""
    if not accept or not accept.strip():
        return allow[0]
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, media.lower()))
    for negq, _, media in sorted(ranked):
        if negq >= 0:
            continue
        if media in ("*/*", "application/*", "application/json", ""):
            return allow[0]
        if media == "text/*" and CSV in allow:
            return CSV
        if media in allow:
            return media
        if media == OPENAPI and OPENAPI in allow:
            return OPENAPI
    raise RestError(
        f"none of the media types in Accept ({accept}) is served",
        status=406,
        code=MEDIA,
        hint="ask for " + ", ".join(allow),
    )
