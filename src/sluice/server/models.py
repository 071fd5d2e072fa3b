"""The API's request and response shapes, as pydantic models: they validate requests and document the
answers in the OpenAPI page (``/docs``). Answers are encoded directly from plain data for speed, in
exactly these shapes (``tests/server`` checks them against the models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]


class OrchestrateRequest(BaseModel):
    """What to run. Without a body: the final objects, fresh ones skipped."""

    model_config = ConfigDict(strict=True, extra="forbid")

    targets: list[int] | None = Field(
        default=None, description="Object ids to produce with their ancestors; null or [] for the final objects."
    )
    force: bool = Field(default=False, description="Run every planned object even if fresh.")


class Error(BaseModel):
    error: str = Field(description="What is wrong and what to do.")
    detail: list[dict[str, Any]] | None = Field(default=None, description="Validation errors, field by field (400 only).")
    active_run_id: str | None = Field(default=None, description="The active run (409 on POST /orchestrate).")


class RunStarted(BaseModel):
    run_id: str


class CancelAccepted(BaseModel):
    run_id: str
    status: Literal["cancelling"]


class Counts(BaseModel):
    pending: int
    ready: int
    running: int
    retrying: int
    loaded: int
    failed: int
    skipped: int


class RunSummary(BaseModel):
    run_id: str
    project: str
    status: RunStatus
    coordinator_gone: bool = Field(
        description="A run started by hand, still running, whose coordinator is gone (killed: nobody holds its lease); "
        "the next run started by hand marks it interrupted."
    )
    started_at: float = Field(description="Unix seconds.")
    finished_at: float | None = Field(description="Unix seconds; null while running.")
    duration_s: float
    targets: list[int]
    counts: Counts


class RunList(BaseModel):
    runs: list[RunSummary]


class CheckResult(BaseModel):
    """One data-quality check's result on the object's output (its ``CheckFinished`` event, docs/checks.md)."""

    check: str = Field(description="The check's name, unique per object.")
    kind: str = Field(description="Its type: not_null, unique, accepted_values, relationships, row_count...")
    severity: Literal["error", "warn"]
    status: Literal["passed", "failed", "error"] = Field(description="error: the check itself could not run.")
    failing_rows: int = Field(description="Rows breaking the rule.")
    sample: list[str] = Field(description="A few failing rows' keys, as text.")
    message: str
    duration_s: float
    attempt: int = Field(description="The object's attempt the check ran in (only the latest attempt's are kept).")
    covered: Literal["load", "table"] = Field(
        default="table", description="What it looked at: load (only the rows of this load) or table (the whole output)."
    )
    rows_checked: int | None = Field(default=None, description="How many rows it looked at (null: not known).")


class ObjectRun(BaseModel):
    object_id: int
    name: str | None = Field(description="Null when the project no longer defines the object.")
    stage: str
    status: str = Field(description="pending, ready, running, retrying, loaded, failed or skipped.")
    attempt: int
    rows: int | None
    duration_s: float | None
    error: str | None
    reason: str | None
    fresh: bool = Field(
        description="Skipped because unchanged since its last success (its output is kept), not because of a failure."
    )
    location: str | None = Field(description="Lake location of the output.")
    ready_at: float | None
    started_at: float | None
    finished_at: float | None
    checks: list[CheckResult] | None = Field(default=None, description="Its checks' results; absent when it has none.")
    check_state: Literal["passed", "warned", "failed"] | None = Field(
        default=None,
        description="failed: an error-severity check failed or could not run; warned: only warn ones did. Absent without checks.",
    )


class RunDetail(RunSummary):
    options: dict[str, Any]
    objects: list[ObjectRun] = Field(description="Ordered by object id.")


class Stage(BaseModel):
    name: str
    first_id: int | None
    last_id: int | None


class ObjectBrief(BaseModel):
    id: int
    name: str
    stage: str
    kind: Literal["source", "sql", "python", "pyspark", "model", "noop"]
    parents: list[int]
    children: list[int]
    last_status: str | None = Field(description="Status in the most recent run that planned the object.")


class ObjectList(BaseModel):
    project: str
    stages: list[Stage]
    objects: list[ObjectBrief]


class ObjectRunInRun(ObjectRun):
    run_id: str


class Sample(BaseModel):
    columns: list[str]
    rows: list[list[Any]] = Field(description="Up to 10 rows; dates, decimals and bytes (base64) as strings.")


class LastOutput(BaseModel):
    rows: int
    location: str | None
    run_id: str
    loaded_at: float
    logical_date: str | None = Field(
        default=None,
        description="For an object depending on the logical date: the date whose data the output holds (UTC ISO).",
    )
    sample: Sample | None = Field(description="Null when the object has no lake output or it cannot be read.")
    sample_error: str | None = Field(default=None, description="Why the sample could not be read.")


class ObjectDetail(ObjectBrief):
    definition: dict[str, Any]
    metadata: dict[str, Any] = Field(
        description="The definition's other fields, kept as they are (Objets.json: URL, Format, Zone, EtatObjet...)."
    )
    last_state: ObjectRunInRun | None
    last_output: LastOutput | None


class LastEvent(BaseModel):
    id: int = Field(description="The event's offset in sluice.events (its SSE id).")
    event: dict[str, Any]


class RecentEvents(BaseModel):
    events: list[LastEvent] = Field(description="Events up to `before` (excluded), oldest first.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    bus: str = Field(description="ok, or the bus's error.")
    state: str = Field(description="ok, or the state store's error.")
    active_run_id: str | None
    error: str | None = Field(default=None, description="With 503: what does not answer.")
