"""Results of a finished OpenAI-shaped batch: output and error files, counts, usage, billing.

Registered as the kernel's settle hook for the "openai" and "compat" surfaces; runs once per
job, when it is first seen terminal. Line shapes follow specs/openai-batch-api.md §5.2/§5.4:

- success -> output file: ``{"id", "custom_id", "response": {"status_code": 200, "request_id",
  "body"}, "error": null}`` with ``usage`` in the body; billed once, lane "batch".
- the endpoint refused the request (bad model, missing field) or a ``line_error`` fault ->
  error file, ``response`` carries the status and the OpenAI error envelope; not billed.
- never ran (expired / cancelled before its turn) -> error file, ``response: null`` and
  ``error: {"code": "batch_expired" | "batch_cancelled", "message"}``; not billed.
- ``malformed`` fault -> the output line is cut in half; ``missing`` -> the line is left out.
  Both are billed: the work was done, the answer was lost on the way.
"""

from __future__ import annotations

import hashlib
from typing import Any

from planner.sandbox import wire_json
from planner.sandbox.kernel import BlobWriter, Job, JobLine, LineOutcome, SandboxState
from planner.sandbox.openai_answers import answer, check_request
from planner.sandbox.openai_common import (
    COMPAT,
    FILE_RETENTION_SECONDS,
    OPENAI,
    ApiError,
    Flavor,
)

NEVER_RAN = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}
LINE_FAULT_ERROR = ApiError(
    500,
    "The server had an error while processing your request. Sorry about that!",
    type_="server_error",
)


def flavor_of(job: Job) -> Flavor:
    return COMPAT if job.surface == "compat" else OPENAI


def _line_id(job: Job, key: str, what: str) -> str:
    return what + hashlib.sha256(f"{what}\n{job.id}\n{key}".encode()).hexdigest()[:24]


def line_error(job: Job, outcome_request: dict[str, Any], fault: str | None) -> ApiError | None:
    """Why the endpoint would refuse this line (None: it answers normally)."""
    try:
        check_request(flavor_of(job), job.kind, outcome_request, batch=True)
    except ApiError as exc:
        if exc.code == "model_not_found":  # batch error lines show 400 here (spec §5.4)
            exc.status = 400
        return exc
    return LINE_FAULT_ERROR if fault == "error" else None


def _response_line(job: Job, key: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _line_id(job, key, "batch_req_"),
        "custom_id": key,
        "response": {
            "status_code": status,
            "request_id": _line_id(job, key, "req_"),
            "body": body,
        },
        "error": None,
    }


class _Results:
    """Writes one job's rendered lines (into its files as they come) and adds up its counts
    and usage."""

    def __init__(self, job: Job, settled_at: float) -> None:
        self.job = job
        self.settled_at = settled_at
        self.output = BlobWriter()
        self.errors = BlobWriter()
        self.billed: list[tuple[str, dict[str, Any]]] = []
        self.completed = 0
        self.failed = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}

    def add(self, outcome: LineOutcome) -> None:
        job = self.job
        request = outcome.request  # read once: a line kept in the input file is read anew
        refusal = line_error(job, request, outcome.fault)
        if refusal is not None:
            self.failed += 1
            line = _response_line(job, outcome.key, refusal.status, refusal.openai_body())
            self.errors.add(wire_json.dumps(line))
            return
        body, bill = answer(job.kind, request, self.settled_at, prompt=outcome.prompt_tokens)
        self.completed += 1
        self.billed.append((outcome.key, bill))
        for name in self.usage:
            self.usage[name] += bill.get(name, 0)
        if outcome.fault == "missing":
            return
        text = wire_json.dumps(_response_line(job, outcome.key, 200, body))
        if outcome.fault == "malformed":
            text = text[: max(1, len(text) // 2)]
        self.output.add(text)

    def never_ran(self, key: str, phase: str) -> None:
        code, message = NEVER_RAN[phase]
        line = {
            "id": _line_id(self.job, key, "batch_req_"),
            "custom_id": key,
            "response": None,
            "error": {"code": code, "message": message},
        }
        self.errors.add(wire_json.dumps(line))


def settle_hook(state: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
    """Render a terminal job's files into ``job.output`` and return what to bill."""
    settled_at = job.settled_at if job.settled_at is not None else state.clock.now()
    phase = job.phase(settled_at)
    if phase == "failed" or (job.fault is not None and job.fault.kind == "stuck"):
        job.executed = []  # a stuck job expires with nothing run
    results = _Results(job, settled_at)
    for outcome in job.executed:
        results.add(outcome)
    if phase in NEVER_RAN:
        ran = {outcome.index for outcome in job.executed}
        for index, line in enumerate(job.lines):
            if index not in ran:
                results.never_ran(line.key, phase)
    job.output = {
        "output_file_id": _write(state, job, results.output, "output", settled_at)
        if results.completed
        else None,
        "error_file_id": _write(state, job, results.errors, "error", settled_at)
        if results.errors
        else None,
        "counts": {
            "total": 0 if phase == "failed" else job.size,
            "completed": results.completed,
            "failed": results.failed,
        },
        "usage": None if phase == "failed" else _batch_usage(results.usage),
    }
    return results.billed


def _batch_usage(totals: dict[str, int]) -> dict[str, Any]:
    return {
        "input_tokens": totals["input_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": totals["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": totals["total_tokens"],
    }


def _write(state: SandboxState, job: Job, lines: BlobWriter, what: str, now: float) -> str:
    flavor = flavor_of(job)
    retention = job.extra.get("output_expires_after") or FILE_RETENTION_SECONDS
    bare = job.id.removeprefix("batches/")
    stored = state.add_file(
        surface=flavor.name,
        data=lines.blob(),
        filename=f"{bare}_{what}.jsonl",
        purpose="batch_output",
        mime_type="application/jsonl",
        display_name=f"{bare}_{what}",
        file_id=state.new_id("file-" if flavor.name == "openai" else "", 24),
        expires_at=now + float(retention),
        generated=True,
    )
    return flavor.file_ref(stored.id)


def progress_counts(state: SandboxState, job: Job, now: float) -> dict[str, int]:
    """``request_counts`` of a job that has not settled yet (validating / in progress)."""
    phase = job.phase(now)
    if phase == "pending":
        return {"total": 0, "completed": 0, "failed": 0}
    done = int(len(job.lines) * job.done_fraction(now))
    failed = sum(
        1
        for line in job.lines[:done]
        if _refused(job, line) or state.faults.line_fault(job.id, line.key) == "error"
    )
    return {"total": job.size, "completed": done - failed, "failed": failed}


def _refused(job: Job, line: JobLine) -> bool:
    """Whether the endpoint refuses ``line``'s request (``line_error`` without a fault),
    judged once per line: a line kept in the input file is read to judge it, and a running
    batch is read at every poll."""
    if line.refused is None:
        line.refused = line_error(job, line.request, None) is not None
    return line.refused
