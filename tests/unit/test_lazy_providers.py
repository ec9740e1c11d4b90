"""``LazyProviders``: every configured name at once, each provider built on first lookup, once.

Building a provider imports its SDK; the daemon's path builds them only when a stage first talks
to a provider, so the SDKs' memory is not under the tokenizer's encodings while the spool is
read. Its jobs run on threads: two stages asking at once must still build one provider.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from planner.providers import BatchProvider, LazyProviders


def _counting(made: list[str], name: str, pause: float = 0.0) -> Any:
    def factory() -> BatchProvider:
        made.append(name)
        time.sleep(pause)  # widens the window in which a second caller could build it again
        return object()  # type: ignore[return-value]

    return factory


def test_names_are_known_without_building_anything() -> None:
    made: list[str] = []
    providers = LazyProviders({n: _counting(made, n) for n in ("openai", "gemini")})
    assert sorted(providers) == ["gemini", "openai"] and len(providers) == 2
    assert "openai" in providers and "other" not in providers
    assert providers.get("other") is None
    assert made == [] and providers.built() == []


def test_each_provider_is_built_on_first_lookup_and_kept() -> None:
    made: list[str] = []
    providers = LazyProviders({n: _counting(made, n) for n in ("openai", "gemini")})
    first = providers["openai"]
    assert providers["openai"] is first and providers.get("openai") is first
    assert made == ["openai"] and providers.built() == ["openai"]
    with pytest.raises(KeyError):
        providers["other"]


def test_callers_on_threads_at_once_build_one_provider() -> None:
    made: list[str] = []
    providers = LazyProviders({"openai": _counting(made, "openai", pause=0.05)})
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(providers["openai"])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["openai"] and len(got) == 8 and all(g is got[0] for g in got)
