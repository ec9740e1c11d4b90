"""The sandbox's own control surface under ``/_sandbox``: ledger, faults, clock, reset.

These endpoints are for tests and operators; they are never subject to injected faults.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from planner.sandbox.faults import FaultPlan, FaultSpecError
from planner.sandbox.kernel import Limits, SandboxState


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": 400, "message": message}}, status_code=400)


async def _json_object(request: Request) -> dict[str, Any] | None:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _limits_dict(limits: Limits) -> dict[str, Any]:
    return {
        "max_concurrent_jobs": limits.max_concurrent_jobs,
        "default_enqueued_tokens": limits.default_enqueued_tokens,
        "enqueued_tokens": dict(limits.enqueued_tokens),
    }


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _apply_limits(limits: Limits, data: dict[str, Any] | None) -> str | None:
    """Update limits in place from {"max_concurrent_jobs", "default_enqueued_tokens",
    "enqueued_tokens": {model: n}}; returns a problem description or None."""
    if data is None:
        return "expected a JSON object"
    unknown = set(data) - {"max_concurrent_jobs", "default_enqueued_tokens", "enqueued_tokens"}
    if unknown:
        return f"unknown limit(s): {', '.join(sorted(unknown))}"
    for name in ("max_concurrent_jobs", "default_enqueued_tokens"):
        if name in data and not _whole(data[name]):
            return f"{name} must be a whole number >= 0"
    tokens = data.get("enqueued_tokens", {})
    if not isinstance(tokens, dict) or not all(
        isinstance(k, str) and _whole(v) for k, v in tokens.items()
    ):
        return "enqueued_tokens must map model ids to whole numbers >= 0"
    if "max_concurrent_jobs" in data:
        limits.max_concurrent_jobs = data["max_concurrent_jobs"]
    if "default_enqueued_tokens" in data:
        limits.default_enqueued_tokens = data["default_enqueued_tokens"]
    limits.enqueued_tokens.update(tokens)
    return None


def install(app: FastAPI, state: SandboxState) -> None:
    _install_clock(app, state)

    @app.get("/_sandbox/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "now": state.clock.now()}

    @app.get("/_sandbox/ledger")
    def ledger() -> dict[str, Any]:
        return state.snapshot()

    @app.get("/_sandbox/faults")
    def get_faults() -> dict[str, Any]:
        return state.faults.to_dict()

    @app.post("/_sandbox/faults", response_model=None)
    async def set_faults(request: Request) -> dict[str, Any] | JSONResponse:
        data = await _json_object(request)
        if data is None:
            return _bad_request('expected a JSON object: {"spec": "..."} or {"name": value}')
        try:
            plan = FaultPlan.from_mapping(data)
        except FaultSpecError as exc:
            return _bad_request(str(exc))
        with state.lock:
            state.faults = plan
        return plan.to_dict()

    @app.get("/_sandbox/limits")
    def get_limits() -> dict[str, Any]:
        return _limits_dict(state.limits)

    @app.post("/_sandbox/limits", response_model=None)
    async def set_limits(request: Request) -> dict[str, Any] | JSONResponse:
        data = await _json_object(request)
        problem = _apply_limits(state.limits, data)
        if problem:
            return _bad_request(problem)
        return _limits_dict(state.limits)

    @app.post("/_sandbox/reset")
    def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}


def _install_clock(app: FastAPI, state: SandboxState) -> None:
    @app.get("/_sandbox/clock")
    def get_clock() -> dict[str, Any]:
        return {
            "now": state.clock.now(),
            "seconds_per_state": state.clock.seconds_per_state,
            "manual": state.clock.manual,
        }

    @app.post("/_sandbox/clock/advance", response_model=None)
    async def advance(request: Request) -> dict[str, Any] | JSONResponse:
        data = await _json_object(request)
        seconds = (data or {}).get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return _bad_request('expected {"seconds": N} with N >= 0')
        state.clock.advance(float(seconds))
        return {"now": state.clock.now()}

    @app.post("/_sandbox/clock/speed", response_model=None)
    async def speed(request: Request) -> dict[str, Any] | JSONResponse:
        data = await _json_object(request)
        value = (data or {}).get("seconds_per_state")
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            return _bad_request('expected {"seconds_per_state": S} with S >= 0')
        state.clock.seconds_per_state = float(value)
        return {"seconds_per_state": state.clock.seconds_per_state}
