"""The sandbox's answers to chat completions, embeddings and responses requests.

One place renders each endpoint's response body, used by the interactive routes and by the batch
results alike, so a batch line and the same request sent interactively get the same answer and
the same ``usage`` (the deterministic rule of ``usage.py``). ``check_request`` says which
requests the endpoint itself would refuse (unknown model, missing field, ...), as an ``ApiError``.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, NamedTuple

from planner.sandbox import usage
from planner.sandbox.openai_common import ApiError, Flavor

MAX_EMBEDDING_INPUTS_PER_REQUEST = 2048


class _Reply(NamedTuple):
    """One generated answer, as both response shapes render it."""

    model: str
    text: str
    prompt: int  # tokens
    output: int  # tokens
    created: float
    name: str  # from the request's digest: the same request, the same ids


def is_embedding_model(model: str) -> bool:
    return "embedding" in model


def check_model(flavor: Flavor, model: Any, *, embedding: bool) -> str:
    """The model id of a request, or the error the endpoint gives for it."""
    if model is None or model == "":
        raise ApiError(
            400,
            "You must provide a model parameter.",
            code="missing_required_parameter",
            param="model",
        )
    if not isinstance(model, str):
        raise ApiError(400, "Invalid type for 'model': expected a string.", param="model")
    bare = model.removeprefix("models/") if flavor.name == "compat" else model
    if not bare.startswith(flavor.model_families):
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if is_embedding_model(bare) != embedding:
        what = "an embedding" if embedding else "a chat"
        raise ApiError(
            400,
            f"The model `{model}` is not {what} model and is not supported on this endpoint.",
            code="model_not_supported",
            param="model",
        )
    return model


def _missing(name: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{name}'.",
        code="missing_required_parameter",
        param=name,
    )


def check_request(flavor: Flavor, kind: str, body: dict[str, Any], *, batch: bool) -> str:
    """Validate one request body for endpoint ``kind``; returns its model or raises ApiError."""
    model = check_model(flavor, body.get("model"), embedding=kind == "embeddings")
    if body.get("stream"):
        where = "in a batch" if batch else "by the sandbox"
        raise ApiError(400, f"Streaming is not supported {where}.", param="stream")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _missing("messages")
    elif kind == "responses":
        if body.get("input") in (None, "", []):
            raise _missing("input")
    elif kind == "embeddings":
        given = body.get("input")
        if given is None:
            raise _missing("input")
        texts = usage.embedding_texts(body)
        if not texts or any(t == "" for t in texts):
            raise ApiError(400, "'$.input' is invalid: inputs must be non-empty.", param="input")
        if len(texts) > MAX_EMBEDDING_INPUTS_PER_REQUEST:
            raise ApiError(
                400,
                f"'$.input' is invalid: at most {MAX_EMBEDDING_INPUTS_PER_REQUEST} inputs, "
                f"got {len(texts)}.",
                param="input",
            )
    return model


def prompt_tokens(kind: str, body: dict[str, Any]) -> int:
    """Input tokens a request will be billed (also its weight in the enqueued-token limit)."""
    if kind == "embeddings":
        return usage.embedding_tokens(usage.embedding_texts(body))
    return usage.prompt_tokens(body)


def answer(
    kind: str, body: dict[str, Any], created: float, *, prompt: int | None = None
) -> tuple[dict[str, Any], dict[str, int]]:
    """(response body, ledger usage) for a request that passed ``check_request``; ``prompt``:
    its ``prompt_tokens``, when counted already (a batch line, at create)."""
    model = str(body["model"])
    if kind == "embeddings":
        return _embeddings(model, body)
    digest = usage.request_digest(model, body)
    text, prompt, output = usage.fake_completion(model, body, digest=digest, prompt=prompt)
    bill = {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}
    reply = _Reply(model, text, prompt, output, created, digest.hex()[:24])
    if kind == "responses":
        return _responses(reply, body), bill
    return _chat(reply), bill


def _chat(r: _Reply) -> dict[str, Any]:
    model, text, prompt, output = r.model, r.text, r.prompt, r.output
    return {
        "id": "chatcmpl-" + r.name,
        "object": "chat.completion",
        "created": int(r.created),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_sandbox",
    }


def _responses(r: _Reply, body: dict[str, Any]) -> dict[str, Any]:
    model, text, prompt, output, digest = r.model, r.text, r.prompt, r.output, r.name
    return {
        "id": "resp_" + digest,
        "object": "response",
        "created_at": int(r.created),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + digest,
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "text": {"format": {"type": "text"}},
        "metadata": body.get("metadata") or {},
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output,
        },
    }


def _embeddings(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    texts = usage.embedding_texts(body)
    dims = body.get("dimensions")
    size = dims if isinstance(dims, int) and not isinstance(dims, bool) and dims > 0 else None
    as_base64 = body.get("encoding_format") == "base64"
    data: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        vector = usage.fake_embedding(model, text, size)
        value: Any = vector
        if as_base64:
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = usage.embedding_tokens(texts)
    response = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return response, {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
