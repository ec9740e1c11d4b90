"""Batch providers: the ``BatchProvider`` port (``base.py``) and one module per kind.

The registry maps the config's ``kind`` to the implementing class. Classes are imported on
first use so that commands which never talk to a provider do not pay for importing the SDKs.
"""

from __future__ import annotations

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


__all__ = [
    "REGISTRY",
    "BadLine",
    "BatchLine",
    "BatchPayload",
    "BatchProvider",
    "ErrorKind",
    "LineResult",
    "RemoteBatch",
    "RequestCounts",
    "create_provider",
    "provider_class",
    "quiet_sdk_loggers",
]
