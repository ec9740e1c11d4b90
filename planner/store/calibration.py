"""The samples calibration learns from, and the estimate accuracy ``report`` shows.

Read from the request rows: the raw estimate (``est_raw_input_tokens``), the estimate used
(``est_input_tokens``, corrected), the billed usage and whether a maximum output was named.
Only the latest ``SAMPLE`` billed requests per model (or per source and model) count, so the
correction follows a provider that changes its tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from planner.core.calibrate import InputCalibration, calibrate, learned_output
from planner.store._sql import CHUNK, chunks, rowcount, translated
from planner.store.tables import REQUEST

SAMPLE = 1000


@translated
def input_calibrations(session: Session, per_model: int = SAMPLE) -> dict[str, InputCalibration]:
    """Per model, the latest billed requests' raw estimates and billed input tokens."""
    query = (
        select(REQUEST.c.model, REQUEST.c.est_raw_input_tokens, REQUEST.c.usage_input_tokens)
        .where(
            REQUEST.c.est_raw_input_tokens.is_not(None),
            REQUEST.c.usage_input_tokens.is_not(None),
        )
        .order_by(REQUEST.c.id.desc())
    )
    pairs: dict[str, list[tuple[int, int]]] = {}
    for model, raw, billed in session.execute(query.execution_options(yield_per=CHUNK)):
        seen = pairs.setdefault(model, [])
        if len(seen) < per_model:
            seen.append((int(raw), int(billed)))
    return {model: calibrate(found) for model, found in pairs.items()}


@translated
def learned_outputs(session: Session, per_group: int = SAMPLE) -> dict[tuple[str, str], int]:
    """Per (source, model): the p95 of billed output tokens of the requests that named no
    maximum, once there are enough of them."""
    query = (
        select(REQUEST.c.source, REQUEST.c.model, REQUEST.c.usage_output_tokens)
        .where(
            REQUEST.c.output_max_given.is_(False),
            REQUEST.c.usage_output_tokens.is_not(None),
        )
        .order_by(REQUEST.c.id.desc())
    )
    outputs: dict[tuple[str, str], list[int]] = {}
    for source, model, billed in session.execute(query.execution_options(yield_per=CHUNK)):
        seen = outputs.setdefault((source, model), [])
        if len(seen) < per_group:
            seen.append(int(billed))
    found = {key: learned_output(values) for key, values in outputs.items()}
    return {key: value for key, value in found.items() if value is not None}


@translated
def record_raw_estimates(
    session: Session, rows: Iterable[tuple[int, int, bool]], now: datetime
) -> int:
    """Keep ``(id, raw input estimate, whether a maximum output was named)`` per request."""
    statement = (
        update(REQUEST)
        .where(REQUEST.c.id == bindparam("b_id"))
        .values(
            est_raw_input_tokens=bindparam("b_raw"),
            output_max_given=bindparam("b_given"),
            updated_at=bindparam("b_now", type_=REQUEST.c.updated_at.type),
        )
    )
    params = [{"b_id": i, "b_raw": raw, "b_given": given, "b_now": now} for i, raw, given in rows]
    updated = 0
    for chunk in chunks(params):
        updated += rowcount(session.connection().execute(statement, list(chunk)))
    return updated


@dataclass(slots=True)
class Accuracy:
    """Estimated against billed tokens for one (provider, model)."""

    provider: str | None
    model: str
    requests: int = 0
    raw_input: int = 0  # the estimator's own counts (where kept)
    raw_billed_input: int = 0  # billed input of the requests that have a raw count
    estimated_input: int = 0  # the estimates used (calibrated)
    billed_input: int = 0
    estimated_output: int = 0
    billed_output: int = 0


@translated
def accuracy(session: Session, since: datetime | None = None) -> list[Accuracy]:
    """Per (provider, model), the billed requests (completed at or after ``since``)."""
    query = select(
        REQUEST.c.provider,
        REQUEST.c.model,
        REQUEST.c.est_raw_input_tokens,
        REQUEST.c.est_input_tokens,
        REQUEST.c.usage_input_tokens,
        REQUEST.c.est_output_tokens,
        REQUEST.c.usage_output_tokens,
    ).where(REQUEST.c.usage_input_tokens.is_not(None), REQUEST.c.est_input_tokens.is_not(None))
    if since is not None:
        query = query.where(REQUEST.c.completed_at >= since)
    found: dict[tuple[str | None, str], Accuracy] = {}
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        acc = found.setdefault((row.provider, row.model), Accuracy(row.provider, row.model))
        acc.requests += 1
        acc.estimated_input += row.est_input_tokens
        acc.billed_input += row.usage_input_tokens
        if row.est_raw_input_tokens is not None:
            acc.raw_input += row.est_raw_input_tokens
            acc.raw_billed_input += row.usage_input_tokens
        acc.estimated_output += row.est_output_tokens or 0
        acc.billed_output += row.usage_output_tokens or 0
    return [found[k] for k in sorted(found, key=lambda k: (k[0] or "", k[1]))]
