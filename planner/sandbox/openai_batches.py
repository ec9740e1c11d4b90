"""The Batches API of the OpenAI-shaped surfaces: create, retrieve, list, cancel.

The kernel's job phases map onto OpenAI statuses (pending -> validating, running ->
in_progress, succeeded -> completed, ...); the Batch object carries every field of
specs/openai-batch-api.md §6.1 with integer timestamps, null until the event happened.

Refusals follow the real services: a bad request body is a synchronous 400; problems inside the
input file make the batch ``failed`` with ``errors`` once validation is over; OpenAI's enqueued
token limit is also asynchronous (``token_limit_exceeded``), whereas the compat layer — a
native Gemini batch underneath — refuses at create with 429 RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.responses import JSONResponse, Response

from planner.sandbox.faults import JobFault
from planner.sandbox.kernel import Blob, Job, SandboxState, settle_in_background
from planner.sandbox.openai_answers import prompt_tokens
from planner.sandbox.openai_common import (
    COMPLETION_WINDOW_SECONDS,
    ENDPOINT_KINDS,
    ApiError,
    Call,
    Flavor,
    OpenAISettings,
    as_int,
    int_param,
    json_object,
    page_after,
    settings_for,
)
from planner.sandbox.openai_files import lookup
from planner.sandbox.openai_input import ParsedInput, parse_input
from planner.sandbox.openai_results import progress_counts

STATUSES = {
    "pending": "validating",
    "running": "in_progress",
    "finalizing": "finalizing",
    "succeeded": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
OUR_ID_KEYS = ("planner_batch_id", "planner_id", "our_id")
MAX_METADATA_PAIRS = 16
FAULT_FAILURE = {
    "code": "batch_failed",
    "message": "The batch could not be processed due to an internal error. (sandbox fault)",
    "param": None,
    "line": None,
}


def _missing(name: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{name}'.",
        code="missing_required_parameter",
        param=name,
    )


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    ok = (
        isinstance(metadata, dict)
        and len(metadata) <= MAX_METADATA_PAIRS
        and all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in metadata.items()
        )
    )
    if not ok:
        raise ApiError(
            400,
            "Invalid 'metadata': at most 16 pairs of string keys (<= 64 chars) and string "
            "values (<= 512 chars).",
            code="invalid_value",
            param="metadata",
        )
    return dict(metadata)


def _check_output_expiry(value: Any) -> int | None:
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or value.get("anchor") != "created_at"
        or not isinstance(seconds, int)
        or not 3600 <= seconds <= 2_592_000
    ):
        raise ApiError(
            400,
            'Invalid \'output_expires_after\': expected {"anchor": "created_at", '
            '"seconds": 3600..2592000}.',
            code="invalid_value",
            param="output_expires_after",
        )
    return seconds


def _parsed_and_counted(blob: Blob, endpoint: str, settings: OpenAISettings) -> ParsedInput:
    """``parse_input`` with each line's prompt tokens (what the queue limit counts, kept for
    the answers), on a worker thread: counted on the event loop, 20,000 requests held it for
    0.5 s, in which the emulator answered nothing else."""
    kind = ENDPOINT_KINDS[endpoint]
    return parse_input(blob, endpoint, settings, lambda body: prompt_tokens(kind, body))


class BatchesApi:
    def __init__(self, state: SandboxState, flavor: Flavor) -> None:
        self.state = state
        self.flavor = flavor

    # -- create -------------------------------------------------------------------------------
    async def create(self, call: Call) -> Response:
        body = json_object(await call.request.body())
        for name in ("input_file_id", "endpoint", "completion_window"):
            if body.get(name) in (None, ""):
                raise _missing(name)
        endpoint = body["endpoint"]
        if endpoint not in self.flavor.endpoints:
            raise ApiError(
                400,
                f"Invalid value: {endpoint!r}. Supported values are: "
                + ", ".join(f"'{e}'" for e in self.flavor.endpoints)
                + ".",
                code="invalid_value",
                param="endpoint",
            )
        if body["completion_window"] != "24h":
            raise ApiError(
                400,
                f"Invalid value: {body['completion_window']!r}. Supported values are: '24h'.",
                code="invalid_value",
                param="completion_window",
            )
        metadata = _check_metadata(body.get("metadata"))
        output_expiry = _check_output_expiry(body.get("output_expires_after"))
        file_ref = str(body["input_file_id"])
        stored = lookup(self.state, self.flavor, file_ref, call.now)
        if self.flavor.name == "openai" and stored.purpose != "batch":
            raise ApiError(
                400,
                f"File {file_ref} has purpose {stored.purpose!r}; a batch needs a file "
                "uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        settings = settings_for(self.state)
        parsed = await asyncio.to_thread(_parsed_and_counted, stored.blob, endpoint, settings)
        job = self._new_job(call, endpoint, file_ref, metadata, parsed)
        job.extra["output_expires_after"] = output_expiry
        self._admit(job, parsed)
        with self.state.lock:
            created = JSONResponse(batch_object(self.state, self.flavor, job, call.now, fresh=True))
        settle_in_background(self.state, job)
        return created

    def _new_job(
        self,
        call: Call,
        endpoint: str,
        file_ref: str,
        metadata: dict[str, str] | None,
        parsed: ParsedInput,
    ) -> Job:
        kind = ENDPOINT_KINDS[endpoint]
        if self.flavor.name == "compat":
            job_id = "batches/" + self.state.new_id("", 20)
        else:
            job_id = "batch_" + self.state.new_id("", 32)
        our_id = next((metadata[k] for k in OUR_ID_KEYS if metadata and metadata.get(k)), None)
        tokens = sum(line.prompt_tokens or 0 for line in parsed.lines)
        return Job(
            id=job_id,
            surface=self.flavor.name,
            kind=kind,
            model=parsed.model,
            lines=parsed.lines,
            created_at=call.now,
            seconds_per_state=self.state.clock.seconds_per_state,
            our_id=our_id,
            metadata=dict(metadata or {}),
            input_file_id=file_ref,
            enqueued_tokens=tokens,
            expires_after=float(COMPLETION_WINDOW_SECONDS),
            extra={
                "endpoint": endpoint,
                "metadata_given": metadata is not None,
                "errors": None,
            },
        )

    def _admit(self, job: Job, parsed: ParsedInput) -> None:
        """Decide the job's fate (validation, injected fault, queue limit) and register it."""
        with self.state.lock:
            fault = self.state.faults.job_fault(job.id, self.flavor.name, "create")
            if parsed.errors:
                job.fault = JobFault(kind="fail", message="validation")
                job.extra["errors"] = parsed.errors
                job.enqueued_tokens = 0
            elif fault is not None and fault.kind == "token_limit":
                self._token_limit(job, self.state.limits.enqueued_limit(job.model))
            else:
                refusal = self.state.check_limits(job, job.created_at)
                if refusal is not None and refusal.kind == "enqueued_tokens":
                    self._token_limit(job, self.state.limits.enqueued_limit(job.model))
                elif refusal is not None:
                    raise ApiError(
                        429, refusal.message, code="rate_limit_exceeded", type_="requests"
                    )
                else:
                    job.fault = fault
                    if fault is not None and fault.kind == "fail":
                        job.extra["errors"] = [dict(FAULT_FAILURE)]
            self.state.add_job(job, enforce_limits=False)

    def _token_limit(self, job: Job, limit: int) -> None:
        if self.flavor.name == "compat":
            raise ApiError(
                429,
                f"Enqueued token limit reached for {job.model}: limit {limit:,} tokens.",
                google_status="RESOURCE_EXHAUSTED",
            )
        org = settings_for(self.state).organization
        job.fault = JobFault(kind="token_limit", message="token_limit_exceeded")
        job.enqueued_tokens = 0
        job.extra["errors"] = [
            {
                "code": "token_limit_exceeded",
                "message": f"Enqueued token limit reached for {job.model} in organization "
                f"{org}. Limit: {limit:,} enqueued tokens. Please try again once some "
                "in_progress batches have been completed.",
                "param": None,
                "line": None,
            }
        ]

    # -- read ---------------------------------------------------------------------------------
    def _job(self, ref: str) -> Job:
        with self.state.lock:
            job = self.state.jobs.get(self.flavor.batch_key(ref))
        if job is None or job.deleted or job.surface != self.flavor.name:
            raise ApiError(404, f"No batch found with id '{ref}'.", param="batch_id")
        return job

    def _render(self, job: Job, now: float) -> Response:
        with self.state.lock:
            return JSONResponse(batch_object(self.state, self.flavor, job, now))

    async def retrieve(self, call: Call, ref: str) -> Response:
        # in a worker thread: settling a 50,000-line batch must not stall other requests
        return await asyncio.to_thread(self._render, self._job(ref), call.now)

    async def list(self, call: Call) -> Response:
        limit = int_param(call.request, "limit", 20, 1, 100)
        after = call.request.query_params.get("after") or None
        return await asyncio.to_thread(self._list, call.now, limit, after)

    def _list(self, now: float, limit: int, after: str | None) -> Response:
        with self.state.lock:
            jobs = [
                j
                for j in self.state.jobs.values()
                if j.surface == self.flavor.name and self.state.visible_in_list(j, now)
            ]
            after_seq = None
            if after is not None:
                anchor = self.state.jobs.get(self.flavor.batch_key(after))
                if anchor is None or anchor.surface != self.flavor.name:
                    raise ApiError(400, f"Invalid 'after': no batch {after!r}.", param="after")
                after_seq = int(anchor.extra["seq"])
            page = page_after(
                jobs, lambda j: j.id, lambda j: int(j.extra["seq"]), after, after_seq, limit
            )
            page["data"] = [batch_object(self.state, self.flavor, j, now) for j in page["data"]]
        return JSONResponse(page)

    async def cancel(self, call: Call, ref: str) -> Response:
        job = self._job(ref)
        with self.state.lock:
            status = STATUSES[job.phase(call.now)]
            if status in TERMINAL_STATUSES:
                message = f"Cannot cancel a batch with status '{status}'."
                if self.flavor.google_errors:
                    raise ApiError(400, message, google_status="FAILED_PRECONDITION")
                raise ApiError(409, message)
            self.state.request_cancel(job, call.now)
        return await asyncio.to_thread(self._render, job, call.now)


def _timestamps(job: Job, now: float, phase: str) -> dict[str, int | None]:
    t0, step = job.created_at, job.seconds_per_state
    began = job.phase_started_at(now)
    kind = job.fault.kind if job.fault else None
    cancel_at = job.cancel_requested_at if phase in ("cancelling", "cancelled") else None
    horizon = min(now, cancel_at if cancel_at is not None else now, began)
    ran = kind not in ("fail", "token_limit", "stuck") and phase != "pending"
    in_progress = t0 + step if ran and horizon >= t0 + step else None
    if phase == "cancelled" and cancel_at is None:  # cancelled by a fault, not by a client
        cancel_at = began
    return {
        "in_progress_at": as_int(in_progress),
        "finalizing_at": as_int(t0 + 2 * step) if phase in ("finalizing", "succeeded") else None,
        "completed_at": as_int(began) if phase == "succeeded" else None,
        "failed_at": as_int(began) if phase == "failed" else None,
        "expired_at": as_int(began) if phase == "expired" else None,
        "cancelling_at": as_int(cancel_at),
        "cancelled_at": as_int(began) if phase == "cancelled" else None,
    }


def batch_object(
    state: SandboxState, flavor: Flavor, job: Job, now: float, *, fresh: bool = False
) -> dict[str, Any]:
    """The full Batch object at ``now`` (settles the job first if it is terminal); ``fresh``:
    as ``create`` answers, ``validating`` whatever the clock (the real service validates the
    file after answering, so a batch is never finished in its create response)."""
    if not fresh:
        state.settle(job, now)
    phase = "pending" if fresh else job.phase(now)
    status = STATUSES[phase]
    terminal = status in TERMINAL_STATUSES and job.settled
    errors = job.extra.get("errors") if status == "failed" else None
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.extra["endpoint"],
        "model": job.model or None,
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.output.get("output_file_id") if terminal else None,
        "error_file_id": job.output.get("error_file_id") if terminal else None,
        "created_at": int(job.created_at),
        "expires_at": int(job.created_at) + COMPLETION_WINDOW_SECONDS,
        **_timestamps(job, now, phase),
        "request_counts": job.output["counts"]
        if terminal
        else {"total": 0, "completed": 0, "failed": 0}
        if fresh
        else progress_counts(state, job, now),
        "usage": job.output.get("usage") if terminal else None,
        "metadata": job.metadata if job.extra.get("metadata_given") else None,
    }
