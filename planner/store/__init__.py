"""The store: the queue, batches, the audit trail and the money ledger, on SQLite or PostgreSQL.

Every state change in planner goes through the few functions here, each inside the caller's
transaction and each given ``now``:

- ``engine``: ``make_engine``, ``make_session_factory``, ``upgrade`` (Alembic, in code),
  ``redact_url``, ``default_sqlite_url``, ``deferred``.
- ``requests``: ``ingest`` (idempotent per ``(source, key)``), ``transition_requests``
  (compare-and-set, checked against ``core.states``), ``record_estimates``, reads.
- ``batches``: ``create_batch_intent`` (the write-ahead intent), ``transition_batch``,
  ``update_batch``, reads.
- ``claims``: leases with ``FOR UPDATE SKIP LOCKED``, advisory locks, the database clock.
- ``ledger``: ``record_results`` (unique per request attempt) and ``spend`` sums.
- ``stages``: last success/failure of each pipeline stage. ``events``: the audit trail.
"""
