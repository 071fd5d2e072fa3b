"""Python transforms of the Sluice demo project.

Sluice calls each function with its parents as keyword arguments (one pyarrow Table per parent,
named after the parent object) and stores the Table it returns. Everything is computed relative to
AS_OF, a fixed date, so a re-run on unchanged inputs produces the same bytes and stays fresh.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

AS_OF = dt.date(2025, 12, 31)
AGE_BANDS = ((65, "65+"), (55, "55-64"), (45, "45-54"), (35, "35-44"), (25, "25-34"), (18, "18-24"))
LARGE_AMOUNT_EUR = 400.0


def _banded(values: pa.ChunkedArray, bands: tuple[tuple[int, str], ...], below: str) -> pa.ChunkedArray:
    """The label of the first band whose lower bound ``values`` reach, else ``below``."""
    result = pa.chunked_array([pa.array([below] * len(values), pa.string())])
    for bound, name in reversed(bands):
        result = pc.if_else(pc.greater_equal(values, bound), name, result)
    return result


def profile_users(users_clean: pa.Table) -> pa.Table:
    """Add age, age band and tenure (days since sign-up) to the cleaned users."""
    birth = users_clean["birth_date"]
    had_birthday = pc.or_(
        pc.less(pc.month(birth), AS_OF.month),
        pc.and_(pc.equal(pc.month(birth), AS_OF.month), pc.less_equal(pc.day(birth), AS_OF.day)),
    )
    age = pc.subtract(pc.subtract(AS_OF.year, pc.year(birth)), pc.cast(pc.invert(had_birthday), pa.int64()))
    tenure = pc.days_between(users_clean["signup_date"], pa.scalar(AS_OF, pa.date32()))
    return (
        users_clean.append_column("age", pc.cast(age, pa.int32()))
        .append_column("age_band", _banded(age, AGE_BANDS, "under 18"))
        .append_column("tenure_days", pc.cast(tenure, pa.int32()))
    )


def score_transactions(transactions_clean: pa.Table, users_profiled: pa.Table) -> pa.Table:
    """A simple fraud-risk score in [0, 1] and a level (low, medium, high) per transaction.

    Signals: a large amount, a currency other than the customer's home currency, an account
    younger than 30 days, a web order, and a bulk quantity.
    """
    users = users_profiled.select(["user_id", "home_currency", "signup_date"])
    joined = transactions_clean.join(users, "user_id", join_type="left outer").sort_by("transaction_id")
    account_days = pc.days_between(joined["signup_date"], joined["transaction_date"])
    signals = (
        (0.40, pc.greater(joined["amount_eur"], LARGE_AMOUNT_EUR)),
        (0.25, pc.not_equal(joined["currency"], joined["home_currency"])),
        (0.20, pc.less(account_days, 30)),
        (0.05, pc.equal(joined["channel"], "web")),
        (0.10, pc.greater_equal(joined["quantity"], 4)),
    )
    score = pa.chunked_array([pa.array([0.0] * joined.num_rows, pa.float64())])
    for weight, flag in signals:
        score = pc.add(score, pc.if_else(pc.fill_null(flag, False), weight, 0.0))
    score = pc.round(score, 2)
    level = _banded(pc.multiply(score, 100), ((50, "high"), (25, "medium")), "low")
    return (
        joined.drop_columns(["home_currency", "signup_date"])
        .append_column("risk_score", score)
        .append_column("risk_level", level)
    )
