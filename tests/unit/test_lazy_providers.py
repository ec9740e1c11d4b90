"""``LazyProviders``: every configured name at once, each provider built on first lookup, once.

Building a provider imports its SDK; the daemon's path builds them only when a stage first talks
to a provider, so the SDKs' memory is not under the tokenizer's encodings while the spool is
read. Its jobs run on threads: two stages asking at once must still build one provider.
"""

from __future__ import annotations

import subprocess
import sys
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


def test_one_providers_build_never_waits_for_anothers() -> None:
    """Each name has a lock of its own: a slow build (an SDK's import) holds back only the
    callers of that provider. Under one lock for all, the first build below would wait for a
    build that waits for it, until the timeout."""
    gemini_built = threading.Event()

    def openai() -> BatchProvider:
        assert gemini_built.wait(10.0), "gemini's build waited for openai's"
        return object()  # type: ignore[return-value]

    def gemini() -> BatchProvider:
        gemini_built.set()
        return object()  # type: ignore[return-value]

    providers = LazyProviders({"openai": openai, "gemini": gemini})
    errors: list[BaseException] = []

    def build_openai() -> None:
        try:
            providers["openai"]
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    slow = threading.Thread(target=build_openai)
    slow.start()
    time.sleep(0.05)  # openai's build holds its lock (the test passes without this too)
    providers["gemini"]
    slow.join()
    assert not errors and sorted(providers.built()) == ["gemini", "openai"]


@pytest.mark.parametrize(
    ("module", "other_sdk"),
    [("planner.providers.openai", "google.genai"), ("planner.providers.gemini", "openai")],
)
def test_a_provider_module_imports_only_its_own_sdk(module: str, other_sdk: str) -> None:
    """A deployment with one provider loads one SDK: importing the OpenAI provider pulled in
    google-genai too (0.5 s and 14 MiB) through the errors both share."""
    code = f"import sys, {module}; print({other_sdk!r} in sys.modules)"
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "False"
