"""Column type names a user writes (``column_types:``, a Kafka source's ``schema:``) as Arrow types."""

from __future__ import annotations

import doctest

import pyarrow as pa
import pytest

from sluice.connectors import batching
from sluice.connectors.batching import arrow_type
from sluice.errors import SluiceError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("timestamp[ms, tz=UTC]", pa.timestamp("ms", tz="UTC")),
        ("timestamp[us,tz=utc]", pa.timestamp("us", tz="UTC")),
        ("timestamp[ns, tz=Europe/Paris]", pa.timestamp("ns", tz="Europe/Paris")),
        ("timestamp[s, tz=+02:00]", pa.timestamp("s", tz="+02:00")),
        ("TIMESTAMP[ms]", pa.timestamp("ms")),
        ("timestamp", pa.timestamp("us")),
        ("int64", pa.int64()),
    ],
)
def test_time_zone_aware_timestamps_are_written_as_pyarrow_prints_them(name: str, expected: pa.DataType) -> None:
    assert arrow_type(name) == expected
    assert arrow_type(str(expected)) == expected  # what pyarrow prints reads back


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("timestamp[ms, tz=Mars/Olympus]", "unknown time zone 'Mars/Olympus' in column type 'timestamp[ms, tz=Mars/Olympus]'"),
        ("timestamp[ms, tz=]", "unknown time zone ''"),
        ("timestamp[ps]", "unknown column type 'timestamp[ps]'"),
    ],
)
def test_a_wrong_timestamp_type_is_one_line_naming_it(name: str, message: str) -> None:
    with pytest.raises(SluiceError) as caught:
        arrow_type(name)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(batching)
    assert result.attempted > 0 and result.failed == 0
