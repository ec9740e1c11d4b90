"""Warnings about catalog entries: stale prices, and retired or soon-retiring models.

``planner prices`` shows them for the whole catalog; ``plan``, ``validate`` and every ``run`` pass
show the retirement ones for the models actually in use, once per model (pricing spec §6 D7).
Pure: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from planner.core.catalog import Catalog, ModelEntry, utc_day


class WarningKind(StrEnum):
    STALE = "stale"
    RETIRED = "retired"
    RETIRING = "retiring"


@dataclass(frozen=True, slots=True)
class CatalogWarning:
    model: str
    kind: WarningKind
    message: str


def is_stale(entry: ModelEntry, now: datetime, max_age: timedelta) -> bool:
    """Checked longer than ``max_age`` ago, or never (an override without ``checked``)."""
    return entry.checked is None or utc_day(now) - entry.checked > max_age


def is_retired(entry: ModelEntry, now: datetime) -> bool:
    """The provider's announced shutdown day has come."""
    return entry.retires is not None and entry.retires <= utc_day(now)


def retires_within(entry: ModelEntry, now: datetime, within: timedelta) -> bool:
    """Still running but shutting down within ``within``."""
    if entry.retires is None or is_retired(entry, now):
        return False
    return entry.retires - utc_day(now) <= within


def _successor(entry: ModelEntry) -> str:
    return f"; successor {entry.successor}" if entry.successor else ""


def _retired_text(entry: ModelEntry) -> str:
    if entry.routed:
        return (
            f"retired on {entry.retires}; the provider routes it to {entry.successor}, "
            "billed at that model's rates"
        )
    return f"retired on {entry.retires}{_successor(entry)}"


def entry_warnings(
    entry: ModelEntry, now: datetime, *, max_age: timedelta, retire_within: timedelta
) -> list[CatalogWarning]:
    """What ``planner prices`` should say about one entry (stale prices, retirement)."""
    found: list[CatalogWarning] = []
    if is_stale(entry, now, max_age):
        checked = entry.checked.isoformat() if entry.checked else "never"
        found.append(CatalogWarning(entry.model, WarningKind.STALE, f"prices checked {checked}"))
    found.extend(retirement_warnings([entry], now, retire_within=retire_within))
    return found


def retirement_warnings(
    entries: Iterable[ModelEntry], now: datetime, *, retire_within: timedelta = timedelta(days=30)
) -> list[CatalogWarning]:
    """One warning per retired or soon-retiring model among ``entries`` (each model once, in
    model order): what ``plan``, ``validate`` and each ``run`` pass say about the models in use.
    """
    found: list[CatalogWarning] = []
    for entry in sorted({e.model: e for e in entries}.values(), key=lambda e: e.model):
        if is_retired(entry, now):
            found.append(CatalogWarning(entry.model, WarningKind.RETIRED, _retired_text(entry)))
        elif retires_within(entry, now, retire_within):
            text = f"retires on {entry.retires}{_successor(entry)}"
            if entry.routed:
                text += f" (then routed to {entry.successor}, billed at its rates)"
            found.append(CatalogWarning(entry.model, WarningKind.RETIRING, text))
    return found


def catalog_warnings(
    catalog: Catalog,
    now: datetime,
    *,
    max_age: timedelta = timedelta(days=90),
    retire_within: timedelta = timedelta(days=30),
) -> list[CatalogWarning]:
    """Warnings for every model, in model order."""
    return [
        warning
        for entry in catalog.entries()
        for warning in entry_warnings(entry, now, max_age=max_age, retire_within=retire_within)
    ]
