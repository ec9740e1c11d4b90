"""planner's ingest into PostgreSQL against a plain ``COPY`` of the same rows.

Usage::

    python -m bench pg-ingest              # 50,000 requests, 3 alternating rounds
    python -m bench pg-ingest 200000 --rounds 5

The server is ``PLANNER_BENCH_PG_URL`` (else ``PLANNER_TEST_PG_URL``, else
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). The benchmark works in a schema of its
own (``bench_<random>``, first on the ``search_path``), migrated by planner (``alembic upgrade
head``), and drops it at the end, whatever happens.

The requests are the mixed corpus of ``bench/corpus.py`` (fixed seed) parsed into ``Request``
values before anything is timed. Each round, alternately, into emptied ``request`` and
``request_body`` tables (``TRUNCATE``; the same tables, constraints and indexes for both):

* copy   — the baseline: ``COPY request (id, source, key, ...) FROM STDIN`` and ``COPY
  request_body (request_id, body_json) FROM STDIN`` with psycopg's ``copy.write_row`` of rows
  built beforehand (the rows ``store.requests.ingest`` would store, numbered, so the time of
  building them is not in the baseline), then commit;
* ingest — ``planner.store.requests.ingest`` (what the daemon's ``ingest`` stage calls per
  spool file): it builds the rows, inserts the new ones (``ON CONFLICT DO NOTHING``, idempotent
  per (source, key)) and returns the identities it stored, then commit.

Figures: ``copy seconds / ingest seconds`` in the same round (1.0x = as fast as COPY), median
over the rounds, in wall time and in CPU time (this process plus its PostgreSQL backend, read
from ``/proc``: the server runs here; less disturbed by other load than wall time, but blind to
the server's background writers); rows per second of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from bench.tree_memory import process_seconds

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COLUMNS = (
    "source",
    "key",
    "model",
    "endpoint",
    "received_at",
    "deadline",
    "max_output_tokens",
    "metadata_json",
    "origin",
    "state",
    "attempts",
    "claims",
    "updated_at",
)


def base_url() -> str:
    return os.environ.get("PLANNER_BENCH_PG_URL") or os.environ.get(
        "PLANNER_TEST_PG_URL", DEFAULT_URL
    )


@contextmanager
def bench_schema() -> Iterator[str]:
    """A URL whose connections use a new schema, migrated by planner; dropped on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from planner.store.engine import upgrade

    base = make_url(base_url())
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    schema = "bench_" + uuid.uuid4().hex[:12]
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        upgrade(url)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def requests_of(n: int, seed: int) -> list[Any]:
    """``n`` requests of the mixed corpus, parsed as the spool source would."""
    from bench.corpus import Corpus
    from planner.config.prices import shipped_catalog
    from planner.core.model import Request
    from planner.sources.formats import Defaults
    from planner.sources.lines import parse_line

    catalog = shipped_catalog()
    settings = Defaults(
        source="spool",
        family_of=catalog.family_of,
        facts_of=catalog.get,
        default_model="gpt-4o-mini",
        default_embedding_model="text-embedding-3-small",
    )
    corpus, now, ignored = Corpus(seed), datetime.now(UTC), []
    requests = []
    for i in range(n):
        line = json.dumps(corpus.line(i, ignored), ensure_ascii=False)
        request = parse_line(line, file="bench.jsonl", line=i + 1, now=now, settings=settings)
        if not isinstance(request, Request):
            raise SystemExit(f"corpus line {i + 1} refused: {request}")
        requests.append(request)
    return requests


class Spent(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds of this process and of its server backend (``/proc``)


@contextmanager
def spent(backend: int, into: list[Spent]) -> Iterator[None]:
    """Wall and CPU seconds of the block: this process's and its PostgreSQL backend's (the
    server runs on this machine), so a figure less disturbed by other load than wall time."""
    wall, own, server = time.perf_counter(), time.process_time(), process_seconds(backend)
    yield
    into.append(
        Spent(
            time.perf_counter() - wall,
            time.process_time() - own + process_seconds(backend) - server,
        )
    )


def copy_rows(url: str, rows: list[tuple[Any, ...]], bodies: list[str]) -> Spent:
    """COPY ``rows`` (numbered from 1) into the request table, ``bodies`` into
    request_body, and commit."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    got: list[Spent] = []
    with psycopg.connect(parsed.render_as_string(hide_password=False)) as connection:
        backend = connection.info.backend_pid
        with spent(backend, got):
            with connection.cursor() as cursor:
                statement = f"COPY request (id, {', '.join(COLUMNS)}) FROM STDIN"
                with cursor.copy(statement) as copy:
                    for number, row in enumerate(rows, 1):
                        copy.write_row((number, *row))
                statement = "COPY request_body (request_id, body_json) FROM STDIN"
                with cursor.copy(statement) as copy:
                    for number, body in enumerate(bodies, 1):
                        copy.write_row((number, body))
            connection.commit()
    return got[0]


def ingest_rows(factory: Any, requests: list[Any]) -> tuple[Spent, int]:
    """``store.requests.ingest`` of ``requests`` in one transaction; the rows inserted."""
    from sqlalchemy import text

    from planner.store import requests as store_requests

    now = datetime.now(UTC)
    got: list[Spent] = []
    with factory() as session:
        backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        session.commit()
        with spent(backend, got), session.begin():
            result = store_requests.ingest(session, requests, now)
    return got[0], result.inserted


def empty(engine: Any) -> None:
    """Empty request tables, vacuumed and analysed, before each subject."""
    from sqlalchemy import text

    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text("TRUNCATE request CASCADE"))
        connection.execute(text("VACUUM ANALYZE request"))
        connection.execute(text("VACUUM ANALYZE request_body"))


def measure(args: argparse.Namespace) -> dict[str, object]:
    from planner.store import requests as store_requests
    from planner.store.engine import make_engine, make_session_factory

    started = time.perf_counter()
    requests = requests_of(args.requests, args.seed)
    now = datetime.now(UTC)
    build = time.perf_counter()
    dicts = (store_requests._row_for(r, now) for r in requests)
    rows = [tuple(row[c] for c in COLUMNS) for row in dicts]
    bodies = [store_requests.body_json(r) for r in requests]
    build = time.perf_counter() - build
    body_mib = sum(map(len, bodies)) / 2**20
    print(
        f"{args.requests:,} requests (mixed corpus, seed {args.seed}, {body_mib:,.1f} MiB of "
        f"bodies) parsed in {time.perf_counter() - started:.1f}s; rows built in {build:.2f}s "
        f"(not in the COPY figure)",
        flush=True,
    )
    rounds: list[dict[str, float]] = []
    with bench_schema() as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            for r in range(args.rounds):
                empty(engine)
                copy = copy_rows(url, rows, bodies)
                empty(engine)
                ingest, inserted = ingest_rows(factory, requests)
                if inserted != args.requests:
                    raise SystemExit(f"ingest stored {inserted} of {args.requests}")
                figures = {
                    "copy_s": copy.wall,
                    "copy_cpu_s": copy.cpu,
                    "ingest_s": ingest.wall,
                    "ingest_cpu_s": ingest.cpu,
                    "ratio": copy.wall / ingest.wall,
                    "cpu_ratio": copy.cpu / ingest.cpu,
                }
                rounds.append(figures)
                print(
                    f"round {r + 1}: copy {copy.wall:.2f}s ({args.requests / copy.wall:,.0f} "
                    f"rows/s, CPU {copy.cpu:.2f}s)  ingest {ingest.wall:.2f}s "
                    f"({args.requests / ingest.wall:,.0f} rows/s, CPU {ingest.cpu:.2f}s): "
                    f"{figures['ratio']:.2f}x copy, CPU {figures['cpu_ratio']:.2f}x",
                    flush=True,
                )
        finally:
            engine.dispose()
    ratio = statistics.median(r["ratio"] for r in rounds)
    cpu_ratio = statistics.median(r["cpu_ratio"] for r in rounds)
    print(
        f"ingest: median {ratio:.2f}x a plain COPY of the same rows in wall time, {cpu_ratio:.2f}x "
        f"in CPU time (client + server backend); goal >= 0.5x"
    )
    return {
        "requests": args.requests,
        "rounds": rounds,
        "median_ratio": ratio,
        "median_cpu_ratio": cpu_ratio,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench pg-ingest", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("requests", type=int, nargs="?", default=50_000, help="rows (50000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--seed", type=int, default=15, help="corpus seed (default 15)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    summary = measure(args)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
