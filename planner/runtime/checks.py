"""What only the running program can judge in a configuration, checked on every load.

The config package checks shape, units and cross-references; some problems show only when the
program that runs the configuration puts it together: the intake's tokens or a store URL read
from the environment. These checks are ``RUNTIME_CHECKS``, handed to the loader
by ``validate`` and by ``run`` alike (``load_runtime_config``), so validate refuses exactly what
run refuses, each problem at the ``FILE:LINE:COL`` of the key it is about. A check returns
(key path, message) pairs and never touches the store or the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from planner.config import (
    PlannerConfig,
    default_store_file,
    load_config,
    resolve_intake_tokens,
    resolve_store_url,
)
from planner.errors import ConfigError, StoreError

Found = Iterator[tuple[tuple[Any, ...], str]]


def _intake(cfg: PlannerConfig) -> Found:
    """The intake's bearer tokens come from the environment or a file: readable, not empty."""
    intake = cfg.intake
    if not intake.enabled or (intake.tokens_env is None and intake.tokens_file is None):
        return  # off, or the loader already says that tokens are missing
    try:
        resolve_intake_tokens(intake, os.environ)
    except ConfigError as exc:
        key = "tokens_file" if intake.tokens_file is not None else "tokens_env"
        yield ("intake", key), "; ".join(exc.problems)


def _store(cfg: PlannerConfig) -> Found:
    if default_store_file(cfg) is not None:
        return  # the default SQLite file under state_dir: a URL of our own making
    from planner.store.engine import check_url  # SQLAlchemy parses it (not needed above)

    env = cfg.store.url_env
    path = ("store", "url_env") if env else ("store", "url")
    try:
        check_url(resolve_store_url(cfg, os.environ))
    except ConfigError:
        yield path, f"${env} is not set in the environment"
    except StoreError as exc:
        yield path, f"${env} holds an {exc}" if env else str(exc)


RUNTIME_CHECKS = (_intake, _store)


def runtime_problems(cfg: PlannerConfig) -> list[str]:
    """The same checks for a config already loaded (``key.path: message`` each)."""
    return [
        f"{'.'.join(map(str, path))}: {message}"
        for check in RUNTIME_CHECKS
        for path, message in check(cfg)
    ]


def load_runtime_config(path: str | os.PathLike[str]) -> PlannerConfig:
    """``load_config`` with the runtime checks: what ``run`` and ``plan`` start from."""
    return load_config(Path(path), checks=RUNTIME_CHECKS)
