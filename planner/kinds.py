"""Classes named by a configured ``kind`` (a source's, a sink's), imported when asked for.

Each package keeps a registry of its kinds: the module and class that implement each. A kind
whose module brings a heavy dependency (the SQL source and sink: SQLAlchemy, a third of a
``planner plan``'s start-up) costs nothing until a configuration uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

Registry = Mapping[str, tuple[str, str]]
"""kind -> (module, class name)."""


def class_of(registry: Registry, kind: str, what: str) -> type[Any]:
    """The class ``registry`` names for ``kind``, imported now; a ``KeyError`` that lists the
    known kinds of ``what`` ("source", "sink") for one it does not know."""
    try:
        module, name = registry[kind]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise KeyError(f"unknown {what} kind {kind!r}; known: {known}") from None
    found: type[Any] = getattr(importlib.import_module(module), name)
    return found
