"""The store's tables, and the two column types that keep money and time exact on every backend.

The SQLModel classes define the schema (and what Alembic's autogenerate compares the migrations
with); the store functions query through their Core ``Table`` objects (``REQUEST``, ``BATCH``
...), which type-check cleanly and map one-to-one onto SQL.

- ``Money``: ``NUMERIC(28, 15)`` on PostgreSQL, a fixed-point decimal string on SQLite (whose
  NUMERIC goes through a float and would turn ``0.000000075`` into ``7.4999...e-08``). Both give
  back a ``Decimal`` equal to the one stored; a value that needs more than 15 decimal places is
  refused rather than rounded.
- ``UTCDateTime``: timezone-aware UTC in Python, always. PostgreSQL stores ``timestamptz``;
  SQLite stores naive UTC text (it drops tzinfo), which sorts and compares correctly because
  every value is written in the same zone and format. A naive datetime is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    exists,
    func,
    select,
)
from sqlalchemy.sql.elements import Label
from sqlalchemy.sql.expression import Exists
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

from planner.errors import StoreError

MONEY_SCALE = 15
MONEY_PRECISION = 28
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Money(TypeDecorator[Decimal]):
    """Exact USD amounts: ``NUMERIC(28, 15)`` on PostgreSQL, decimal text on SQLite."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise StoreError(f"money must be a Decimal, got {type(value).__name__}")
        try:
            exact = value.quantize(MONEY_QUANTUM)
        except InvalidOperation as exc:
            raise StoreError(f"money {value} does not fit NUMERIC(28, 15)") from exc
        if exact != value:
            raise StoreError(f"money {value} has more than {MONEY_SCALE} decimal places")
        if dialect.name == "sqlite":
            return format(exact, "f")
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(MONEY_QUANTUM)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both backends."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise StoreError(f"naive datetime {value.isoformat()} given to the store; use UTC")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """The processor above (then the dialect's own: SQLite formats the text), remembering
        its last value: a stage binds one ``now`` to thousands of rows (``updated_at``,
        ``recorded_at``), and formatting it every time was 3% of a ``run --once``. Keyed by
        identity (a datetime is immutable); the pair is replaced as one object, so a thread
        never reads a value with another's output."""
        process = super().bind_processor(dialect)
        if process is None:
            return None
        last: list[tuple[object, Any]] = [(None, None)]

        def remembering(value: Any) -> Any:
            seen, out = last[0]
            if value is seen and value is not None:
                return out
            out = process(value)
            last[0] = (value, out)
            return out

        return remembering


# A 64-bit id on PostgreSQL; SQLite needs exactly INTEGER PRIMARY KEY to get a rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class StoreModel(SQLModel):
    """Base of the store's tables, on their own metadata (not SQLModel's global one)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RequestRow(StoreModel, table=True):
    """One ingested request, its decision, claim and outcome; ``(source, key)`` is unique."""

    __tablename__ = "request"
    __table_args__ = (
        UniqueConstraint("source", "key"),
        Index(None, "state", "id"),  # a state's requests in id order (planning rounds, claims)
        Index(None, "batch_id"),
        Index(None, "completed_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    source: str = Field(sa_column=Column(String(200), nullable=False))
    key: str = Field(sa_column=Column(String(512), nullable=False))
    model: str = Field(sa_column=Column(String(200), nullable=False))
    endpoint: str = Field(sa_column=Column(String(64), nullable=False))
    provider: str | None = Field(default=None, sa_column=Column(String(200)))
    # the body is in ``request_body`` (RequestBodyRow): this row changes state five times or more
    received_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    deadline: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    max_output_tokens: int | None = Field(default=None, sa_column=Column(Integer))
    metadata_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    origin: str = Field(default="", sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    claims: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    est_input_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    est_output_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    est_method: str | None = Field(default=None, sa_column=Column(String(100)))
    # the estimator's own input count, before calibration (core/calibrate.py learns from it)
    est_raw_input_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    # whether the request named its maximum output (else the output estimate was a default)
    output_max_given: bool | None = Field(default=None, sa_column=Column(Boolean))
    # measured once at intake (core.model.Measured): planning never tokenizes it again
    measured_body_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    measured_line_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    measured_digest: bytes | None = Field(default=None, sa_column=Column(LargeBinary(16)))
    measured_encoding: str | None = Field(default=None, sa_column=Column(String(64)))
    measured_input_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    measured_method: str | None = Field(default=None, sa_column=Column(String(100)))
    measured_output_given: int | None = Field(default=None, sa_column=Column(BigInteger))
    measured_embedding_inputs: int | None = Field(default=None, sa_column=Column(Integer))
    lane: str | None = Field(default=None, sa_column=Column(String(32)))
    # the policy rule that decided the lane (core.policy.Reason); kept after completion
    decision: str | None = Field(default=None, sa_column=Column(String(64)))
    # the upper-bound cost in that lane, counted against budgets while the request is in flight
    reserved_usd: Decimal | None = Field(default=None, sa_column=Column(Money))
    batch_id: str | None = Field(default=None, sa_column=Column(String(64), ForeignKey("batch.id")))
    claimed_by: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    usage_input_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    usage_cached_input_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    usage_output_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    actual_cost_usd: Decimal | None = Field(default=None, sa_column=Column(Money))
    interactive_equiv_usd: Decimal | None = Field(default=None, sa_column=Column(Money))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class RequestBodyRow(StoreModel, table=True):
    """A request's body as JSON, apart from its row (``store/requests.py`` reads it with it).

    Written once, at intake, and read where a batch file is written; the request row changes
    state five times or more on its way (planned, submitted, succeeded, delivered ...), and
    each change rewrote the ~2 KB body with it: SQLite rewrites a whole row, PostgreSQL writes
    a new version of it (a body under ~2 KB is not TOASTed apart). Retention deletes the body
    of an old finished request (its row stays): no body row means compacted."""

    __tablename__ = "request_body"

    request_id: int = Field(
        sa_column=Column(BigId, ForeignKey("request.id"), primary_key=True, autoincrement=False)
    )
    body_json: str = Field(sa_column=Column(Text, nullable=False))


class BatchRow(StoreModel, table=True):
    """One provider batch job; ``id`` is ours (``plb_…``), ``remote_id`` the provider's."""

    __tablename__ = "batch"
    __table_args__ = (Index(None, "state"),)

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    provider: str = Field(sa_column=Column(String(200), nullable=False))
    model: str = Field(sa_column=Column(String(200), nullable=False))
    endpoint: str = Field(sa_column=Column(String(64), nullable=False))
    state: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    remote_id: str | None = Field(default=None, sa_column=Column(String(512)))
    input_file_id: str | None = Field(default=None, sa_column=Column(String(512)))
    output_file_id: str | None = Field(default=None, sa_column=Column(String(512)))
    error_file_id: str | None = Field(default=None, sa_column=Column(String(512)))
    request_count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    est_input_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    submitted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    collected_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_polled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    next_poll_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    attempt: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    claimed_by: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    version: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # deadline escape: the cancel intent, then the provider's acknowledgement
    cancel_requested_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    cancel_sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # chunks of its results settled so far (collect resumes at the next; migration 0010)
    collected_chunks: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )


class EventRow(StoreModel, table=True):
    """Append-only audit: one row per state change, written in the transaction that made it."""

    __tablename__ = "event"
    __table_args__ = (Index(None, "entity", "entity_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    ts: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    entity: str = Field(sa_column=Column(String(16), nullable=False))  # "request" | "batch"
    entity_id: str = Field(sa_column=Column(String(64), nullable=False))
    old_state: str | None = Field(default=None, sa_column=Column(String(32)))
    new_state: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))


class LedgerRow(StoreModel, table=True):
    """What one attempt of one request was billed; unique per (request, attempt), so a
    re-collect cannot bill twice in our books."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("request_id", "attempt"), Index(None, "recorded_at"))

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    request_id: int = Field(sa_column=Column(BigId, ForeignKey("request.id"), nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    source: str = Field(sa_column=Column(String(200), nullable=False))
    provider: str | None = Field(default=None, sa_column=Column(String(200)))
    model: str = Field(sa_column=Column(String(200), nullable=False))
    lane: str = Field(sa_column=Column(String(32), nullable=False))
    batch_id: str | None = Field(default=None, sa_column=Column(String(64)))
    input_tokens: int = Field(sa_column=Column(BigInteger, nullable=False))
    cached_input_tokens: int = Field(sa_column=Column(BigInteger, nullable=False))
    output_tokens: int = Field(sa_column=Column(BigInteger, nullable=False))
    cost_usd: Decimal | None = Field(default=None, sa_column=Column(Money))
    interactive_equiv_usd: Decimal | None = Field(default=None, sa_column=Column(Money))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class StageRunRow(StoreModel, table=True):
    """When each pipeline stage last finished a pass without error (for metrics and status)."""

    __tablename__ = "stage_run"

    stage: str = Field(sa_column=Column(String(64), primary_key=True))
    last_success_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_failure_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class StoreGenerationRow(StoreModel, table=True):
    """One row whose number moves with every committed change to requests, batches or the
    ledger (``store/generation.py``): the metrics reread the store only when it moved."""

    __tablename__ = "store_generation"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    generation: int = Field(sa_column=Column(BigInteger, nullable=False))


class EnqueuedLimitRow(StoreModel, table=True):
    """The enqueued-token limit learned for one (provider, model) queue (``core/enqueued.py``)."""

    __tablename__ = "enqueued_limit"

    provider: str = Field(sa_column=Column(String(200), primary_key=True))
    model: str = Field(sa_column=Column(String(200), primary_key=True))
    tokens: int = Field(sa_column=Column(BigInteger, nullable=False))
    learned_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    batch_id: str | None = Field(default=None, sa_column=Column(String(64)))  # that taught it


class SendRow(StoreModel, table=True):
    """The interactive lane's outbox (``store/sends.py``): one row per request being sent.

    Written before the call (the intent: who sends which attempt, until when), filled with the
    provider's answer right after it, and deleted in the transaction that settles the request.
    A row left without an answer by a process that died is an outcome nobody knows."""

    __tablename__ = "send"

    request_id: int = Field(
        sa_column=Column(BigId, ForeignKey("request.id"), primary_key=True, autoincrement=False)
    )
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    owner: str = Field(sa_column=Column(String(200), nullable=False))
    sent_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    lease_until: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    answered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    answer_json: str | None = Field(default=None, sa_column=Column(Text))
    delivery_id: str | None = Field(default=None, sa_column=Column(String(64)))


class UnitClaimRow(StoreModel, table=True):
    """A lease on one unit of a source (a spool file) while a worker ingests it
    (``store/claims.py``): who holds it and until when; the row is gone once the unit is done.
    A unit whose lease is live belongs to its owner: no other replica recovers it."""

    __tablename__ = "unit_claim"

    source: str = Field(sa_column=Column(String(200), primary_key=True))
    unit: str = Field(sa_column=Column(String(512), primary_key=True))
    owner: str = Field(sa_column=Column(String(200), nullable=False))
    claimed_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    lease_until: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class OutboxRow(StoreModel, table=True):
    """A record waiting for a queued sink (a webhook): written in the transaction that settles
    its request, deleted once the sink accepted it (``store/outbox.py``). ``key`` is the
    record's idempotency key, unique per sink; ``owner``/``lease_until`` the worker sending it;
    ``next_attempt_at`` when a failed one is tried again."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("sink", "key"), Index(None, "next_attempt_at"))

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    sink: str = Field(sa_column=Column(String(200), nullable=False))
    key: str = Field(sa_column=Column(String(200), nullable=False))
    event: str = Field(sa_column=Column(String(16), nullable=False))  # "result" | "dead"
    body_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    owner: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class IntakeFileRow(StoreModel, table=True):
    """A file of the HTTP intake's OpenAI-compatible files API (``store/intake.py``): an
    uploaded batch input (``purpose`` batch) or an output/error file planner wrote for one of its
    batches (``batch_output``, ``batch_id`` set). The bytes live in the store, so every replica
    serves the same files."""

    __tablename__ = "intake_file"
    __table_args__ = (Index(None, "created_at"),)

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    purpose: str = Field(sa_column=Column(String(32), nullable=False))
    filename: str = Field(sa_column=Column(String(255), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    batch_id: str | None = Field(default=None, sa_column=Column(String(64)))
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class IntakeBatchRow(StoreModel, table=True):
    """A batch created through the intake's OpenAI-compatible API; its lines are requests of
    the intake's source (keys ``<batch id>/<custom_id>``) or quarantined lines."""

    __tablename__ = "intake_batch"
    __table_args__ = (Index(None, "created_at"),)

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    source: str = Field(sa_column=Column(String(200), nullable=False))
    input_file_id: str = Field(sa_column=Column(String(64), nullable=False))
    endpoint: str = Field(sa_column=Column(String(64), nullable=False))
    completion_window: str = Field(sa_column=Column(String(16), nullable=False))
    metadata_json: str | None = Field(default=None, sa_column=Column(Text))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    total: int = Field(sa_column=Column(Integer, nullable=False))
    output_file_id: str | None = Field(default=None, sa_column=Column(String(64)))
    error_file_id: str | None = Field(default=None, sa_column=Column(String(64)))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    in_progress_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    finalizing_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    cancelling_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class IntakeLineRow(StoreModel, table=True):
    """One non-blank line of an intake batch's input: the request it became (``key``), or the
    quarantined line with its reason, message and raw text (``reason`` set, ``key`` null)."""

    __tablename__ = "intake_line"

    batch_id: str = Field(
        sa_column=Column(String(64), ForeignKey("intake_batch.id"), primary_key=True)
    )
    line: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    custom_id: str | None = Field(default=None, sa_column=Column(String(512)))
    key: str | None = Field(default=None, sa_column=Column(String(512)))
    reason: str | None = Field(default=None, sa_column=Column(String(64)))
    message: str | None = Field(default=None, sa_column=Column(Text))
    raw: str | None = Field(default=None, sa_column=Column(Text))


class IntakeResultRow(StoreModel, table=True):
    """The result or dead-letter record of one intake request, as the sinks get it; written by
    the intake's own sink before the request's final state is committed."""

    __tablename__ = "intake_result"

    source: str = Field(sa_column=Column(String(200), primary_key=True))
    key: str = Field(sa_column=Column(String(512), primary_key=True))
    ok: bool = Field(sa_column=Column(Boolean, nullable=False))
    record_json: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


METADATA: MetaData = StoreModel.metadata
REQUEST: Table = METADATA.tables["request"]
REQUEST_BODY: Table = METADATA.tables["request_body"]

COMPACTED_BODY = "{}"
"""What a request compacted by retention reads as for its body (it has no ``request_body``
row) and holds as its metadata."""
HAS_BODY: Exists = exists().where(REQUEST_BODY.c.request_id == REQUEST.c.id)
"""Whether a request still has its body (retention has not compacted it)."""
BODY_JSON: Label[str] = func.coalesce(
    select(REQUEST_BODY.c.body_json)
    .where(REQUEST_BODY.c.request_id == REQUEST.c.id)
    .correlate(REQUEST)  # a query without ``request`` in its FROM is refused, not cross-joined
    .scalar_subquery(),
    COMPACTED_BODY,
).label("body_json")
"""A request's body JSON as a column of a query on ``request`` (one look-up by primary key)."""
BATCH: Table = METADATA.tables["batch"]
EVENT: Table = METADATA.tables["event"]
LEDGER: Table = METADATA.tables["ledger"]
STAGE_RUN: Table = METADATA.tables["stage_run"]
STORE_GENERATION: Table = METADATA.tables["store_generation"]
ENQUEUED_LIMIT: Table = METADATA.tables["enqueued_limit"]
SEND: Table = METADATA.tables["send"]
UNIT_CLAIM: Table = METADATA.tables["unit_claim"]
OUTBOX: Table = METADATA.tables["outbox"]
INTAKE_FILE: Table = METADATA.tables["intake_file"]
INTAKE_BATCH: Table = METADATA.tables["intake_batch"]
INTAKE_LINE: Table = METADATA.tables["intake_line"]
INTAKE_RESULT: Table = METADATA.tables["intake_result"]
