"""Batch providers: the ``BatchProvider`` port (``base.py``) and one module per kind.

The registry maps the config's ``kind`` to the implementing class. Classes are imported on
first use so that commands which never talk to a provider do not pay for importing the SDKs,
and :class:`LazyProviders` builds each provider the first time a stage asks for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from importlib import import_module
from typing import Any

from planner.providers.base import (
    BadLine,
    BatchLine,
    BatchPayload,
    BatchProvider,
    ErrorKind,
    LineResult,
    RemoteBatch,
    RequestCounts,
    quiet_sdk_loggers,
)

REGISTRY: dict[str, str] = {
    "gemini": "planner.providers.gemini:GeminiProvider",
    "openai": "planner.providers.openai:OpenAIProvider",
}


def provider_class(kind: str) -> type[Any]:
    """The class implementing ``kind`` (``gemini`` | ``openai``); KeyError names the choices."""
    try:
        target = REGISTRY[kind]
    except KeyError:
        raise KeyError(
            f"unknown provider kind {kind!r}; expected one of {sorted(REGISTRY)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    cls: type[Any] = getattr(import_module(module_name), class_name)
    return cls


def create_provider(kind: str, **options: Any) -> BatchProvider:
    """Build a provider from plain values (api_key, base_url, timeout, max_retries, ...)."""
    provider: BatchProvider = provider_class(kind)(**options)
    return provider


class LazyProviders(Mapping[str, BatchProvider]):
    """Providers by name, each built by its factory the first time it is looked up.

    Building one imports its SDK, and only its own (``providers/errors.sdk_failures``; 34 MB
    for ``openai`` and ``google-genai`` together): done at start-up, that memory sat under the
    tokenizer's encodings while the spool was read, the daemon's peak (``run --once`` of
    20,000: 221 MiB, 185 MiB without it; the bound is 250 MB), and every forked read worker
    carried it. Names are known
    at once (a stage may list them without building anything); the daemon's jobs run on
    threads, so a provider is built once, under a lock of its own (one provider's import never
    waits for another's)."""

    def __init__(self, factories: Mapping[str, Callable[[], BatchProvider]]) -> None:
        self._factories = dict(factories)
        self._built: dict[str, BatchProvider] = {}
        self._locks = {name: threading.Lock() for name in self._factories}

    def __getitem__(self, name: str) -> BatchProvider:
        built = self._built.get(name)
        if built is None:
            factory = self._factories[name]  # KeyError for a name not configured, as a dict
            with self._locks[name]:
                built = self._built.get(name)
                if built is None:
                    built = self._built[name] = factory()
        return built

    def __contains__(self, name: object) -> bool:  # Mapping's own would build it
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def built(self) -> list[str]:
        """The names of the providers built so far."""
        return list(self._built)


__all__ = [
    "REGISTRY",
    "BadLine",
    "BatchLine",
    "BatchPayload",
    "BatchProvider",
    "ErrorKind",
    "LazyProviders",
    "LineResult",
    "RemoteBatch",
    "RequestCounts",
    "create_provider",
    "provider_class",
    "quiet_sdk_loggers",
]
