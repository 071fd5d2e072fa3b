"""Durations written as text (``500ms``, ``10s``, ``1m``, ``1h30m``, ``2 minutes``) as whole microseconds.

>>> parse_duration("1m30s")
90000000
>>> parse_duration("250 ms")
250000
>>> parse_duration(2.5)
2500000

The units are those of Spark Structured Streaming's interval strings (``"10 seconds"``, ``"1 minute"``) and
of Go's ``time.ParseDuration`` (``1h30m``): ``us``, ``ms``, ``s``, ``m``, ``h``, ``d`` and their long forms
(``seconds``, ``minutes``...). A bare number is seconds. Used by the ``window:`` options (size, slide,
watermark) and meant for any other duration option (a trigger's interval).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

US_PER_UNIT: dict[str, int] = {
    "us": 1,
    "µs": 1,
    "microsecond": 1,
    "microseconds": 1,
    "ms": 1_000,
    "millisecond": 1_000,
    "milliseconds": 1_000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "secs": 1_000_000,
    "second": 1_000_000,
    "seconds": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "mins": 60_000_000,
    "minute": 60_000_000,
    "minutes": 60_000_000,
    "h": 3_600_000_000,
    "hour": 3_600_000_000,
    "hours": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*", re.IGNORECASE)
EXAMPLES = "e.g. 500ms, 10s, 1m, 1h30m or 2 minutes"


def parse_duration(value: str | int | float) -> int:
    """``value`` as a whole number of microseconds (>= 0).

    A string is one or more ``<number><unit>`` parts (``1h30m``, ``1.5s``, ``10 seconds``); an int or float is
    seconds. Raises ValueError (naming the value and showing examples) for text that is not a duration, a
    negative number or a fraction of a microsecond.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: write a number and a unit, {EXAMPLES}")
    if isinstance(value, int | float):
        return _whole(Decimal(str(value)) * US_PER_UNIT["s"], value)
    text = value.strip()
    total = Decimal(0)
    position = 0
    for match in _PART.finditer(text):
        unit = match.group(2).lower()
        if match.start() != position or unit not in US_PER_UNIT:
            break
        try:
            total += Decimal(match.group(1)) * US_PER_UNIT[unit]
        except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
            break
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{value!r} is not a duration: write a number and a unit, {EXAMPLES}")
    return _whole(total, value)


def _whole(micros: Decimal, value: str | int | float) -> int:
    if micros < 0:
        raise ValueError(f"{value!r} is negative: a duration is 0 or more, {EXAMPLES}")
    if micros != micros.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of microseconds")
    return int(micros)


def format_duration(micros: int) -> str:
    """``micros`` as the shortest text :func:`parse_duration` reads back (``90000000`` -> ``1m30s``)."""
    if micros == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s", "ms", "us"):
        count, micros = divmod(micros, US_PER_UNIT[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
