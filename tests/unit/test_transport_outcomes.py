"""Which transport failures leave a request's outcome unknown (``providers/errors.py``).

The interactive lane sends a request again only when it provably never left: a failure to
connect is ``Transient``; a read timeout or a connection cut mid-response is ``OutcomeUnknown``
(the provider may have carried it out and billed it). The exceptions are the SDKs' and
httpx's own, raised the way they wrap each other.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from planner.errors import OutcomeUnknown, Transient
from planner.providers.errors import from_genai, from_openai

REQUEST = httpx.Request("POST", "https://api.example/v1/chat/completions")


def _wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as raised:
        return raised


@pytest.mark.parametrize(
    ("exc", "unknown"),
    [
        (
            _wrapped(openai.APIConnectionError(request=REQUEST), httpx.ConnectError("refused")),
            False,
        ),
        (_wrapped(openai.APITimeoutError(request=REQUEST), httpx.ConnectTimeout("slow")), False),
        (_wrapped(openai.APITimeoutError(request=REQUEST), httpx.ReadTimeout("late")), True),
        (
            _wrapped(
                openai.APIConnectionError(request=REQUEST),
                httpx.RemoteProtocolError("peer closed connection without sending a response"),
            ),
            True,
        ),
    ],
)
def test_openai_transport_failures(exc: BaseException, unknown: bool) -> None:
    error = from_openai(exc, operation="interactive call")
    assert isinstance(error, Transient) and error.retryable
    assert isinstance(error, OutcomeUnknown) is unknown, error


@pytest.mark.parametrize(
    ("exc", "unknown"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.PoolTimeout("no connection free"), False),
        (ConnectionRefusedError(111, "refused"), False),
        (httpx.ReadTimeout("late"), True),
        (httpx.ReadError("reset by peer"), True),
        (ConnectionResetError(104, "reset"), True),
    ],
)
def test_gemini_transport_failures(exc: BaseException, unknown: bool) -> None:
    error = from_genai(exc, operation="interactive call")
    assert isinstance(error, Transient)
    assert isinstance(error, OutcomeUnknown) is unknown, error
