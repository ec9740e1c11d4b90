"""Learned enqueued-token limits: one row per (provider, model), lowered by each refusal.

``core/enqueued.py`` decides what a refusal teaches and how long it holds; this module keeps it.
Every function works inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from planner.core.enqueued import TOKEN_LIMIT_CODE, LearnedLimit, learned_from_refusal, lowered
from planner.errors import StoreError
from planner.store import batches as store_batches
from planner.store._sql import translated
from planner.store.requests import dialect_insert
from planner.store.tables import BATCH, ENQUEUED_LIMIT


@translated
def learned_limits(session: Session) -> dict[tuple[str, str], LearnedLimit]:
    """Every learned limit by (provider, model), expired ones included (the caller decides)."""
    rows = session.execute(
        select(
            ENQUEUED_LIMIT.c.provider,
            ENQUEUED_LIMIT.c.model,
            ENQUEUED_LIMIT.c.tokens,
            ENQUEUED_LIMIT.c.learned_at,
        )
    ).all()
    return {
        (provider, model): LearnedLimit(int(tokens), learned_at)
        for provider, model, tokens, learned_at in rows
    }


@translated
def record_learned_limit(
    session: Session,
    provider: str,
    model: str,
    tokens: int,
    now: datetime,
    *,
    batch_id: str | None = None,
) -> int:
    """Lower the (provider, model) limit to ``tokens`` (never raise one still in force); returns
    the limit now stored."""
    if tokens < 1:
        raise StoreError(f"a learned enqueued-token limit must be positive, got {tokens}")
    key = (ENQUEUED_LIMIT.c.provider == provider, ENQUEUED_LIMIT.c.model == model)
    row = session.execute(
        select(ENQUEUED_LIMIT.c.tokens, ENQUEUED_LIMIT.c.learned_at).where(*key).with_for_update()
    ).first()
    old = None if row is None else LearnedLimit(int(row.tokens), row.learned_at)
    value = lowered(old, tokens, now)
    values = {"tokens": value, "learned_at": now, "batch_id": batch_id}
    if row is None:
        statement = (
            dialect_insert(session, ENQUEUED_LIMIT)
            .values(provider=provider, model=model, **values)
            .on_conflict_do_update(index_elements=["provider", "model"], set_=values)
        )
        session.execute(statement)
    else:
        session.execute(update(ENQUEUED_LIMIT).where(*key).values(values))
    return value


@translated
def learn_from_token_limit(session: Session, batch_id: str, now: datetime) -> int:
    """A batch was refused because its model's enqueued-token queue was full: lower the learned
    limit to what the provider held without it (or half the batch, if nothing else was there),
    and mark the batch's reason with ``token_limit_exceeded`` so collect re-plans its requests
    without counting an attempt. Returns the limit now in force.

    The submit stage calls this for a create-time refusal (Gemini 429 ``RESOURCE_EXHAUSTED``
    on an enqueued-token quota), collect for an accepted batch that later failed with
    ``token_limit_exceeded`` (OpenAI).
    """
    batch = store_batches.get_batch(session, batch_id)
    if batch is None:
        raise StoreError(f"batch {batch_id} is not in the store")
    held = store_batches.enqueued_tokens(session, store_batches.AT_PROVIDER, exclude=batch_id).get(
        (batch.provider, batch.model), 0
    )
    tokens = learned_from_refusal(held, batch.est_input_tokens)
    value = record_learned_limit(
        session, batch.provider, batch.model, tokens, now, batch_id=batch_id
    )
    reason = (
        f"{TOKEN_LIMIT_CODE}: the {batch.model} queue held {held} tokens without this batch "
        f"of {batch.est_input_tokens}; enqueued-token limit now {value}"
    )
    session.execute(
        update(BATCH).where(BATCH.c.id == batch_id).values(reason=reason, updated_at=now)
    )
    return value
