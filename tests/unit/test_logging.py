"""Structured JSON logs with secret redaction, through the real logging machinery."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from planner.runtime import logging as plog

KEY = "plannerTestKey-9f8e7d6c5b4a3210"
OPENAI_SHAPED = "sk-proj-ABCDEFGHIJKLMNOPQRSTUV123456"
GEMINI_SHAPED = "AIzaSyA1234567890abcdefghijklmnopqrstu"
UPLOAD_URL = (
    "https://generativelanguage.googleapis.com/upload/v1beta/files?"
    "upload_id=AHxI1nOSECRETcapability123&upload_protocol=resumable"
)


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    old_level = root.level
    handler = plog.setup_logging("DEBUG", [KEY], stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)
    plog.clear_secrets()
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_record_shape(out: io.StringIO) -> None:
    logging.getLogger("planner.pipeline.submit").info(
        "submitted batch %s", "b-1", extra={"event": "batch.submitted", "batch_id": "b-1"}
    )
    (rec,) = lines(out)
    assert rec["event"] == "batch.submitted"
    assert rec["message"] == "submitted batch b-1"
    assert rec["logger"] == "planner.pipeline.submit"
    assert rec["level"] == "info"
    assert rec["batch_id"] == "b-1"
    assert str(rec["ts"]).endswith("+00:00")


def test_planted_key_never_appears(out: io.StringIO) -> None:
    log = logging.getLogger("planner.test")
    log.info("key in message " + KEY, extra={"event": "t.msg"})  # noqa: G003 - a careless call
    log.info("key in args %s", KEY, extra={"event": "t.args"})
    log.info("key in mapping args %(k)s", {"k": KEY}, extra={"event": "t.mapping"})
    log.info(
        "key in extra",
        extra={"event": "t.extra", "header": f"x-goog-api-key: {KEY}", "nested": {"a": [KEY]}},
    )

    class Holder:
        def __str__(self) -> str:
            return f"Holder({KEY})"

    log.info("object in extra", extra={"event": "t.obj", "client": Holder()})
    try:
        raise RuntimeError(f"request failed with key={KEY}")
    except RuntimeError:
        log.exception("provider failed", extra={"event": "t.exc"})
    text = out.getvalue()
    assert KEY not in text
    records = lines(out)
    assert len(records) == 6
    assert [r["event"] for r in records] == [
        "t.msg",
        "t.args",
        "t.mapping",
        "t.extra",
        "t.obj",
        "t.exc",
    ]
    assert plog.REDACTED in str(records[1]["message"])
    assert "RuntimeError" in str(records[5]["exc"])
    assert plog.REDACTED in str(records[5]["exc"])


def test_key_shapes_and_upload_urls_are_redacted(out: io.StringIO) -> None:
    log = logging.getLogger("planner.test")
    log.warning("openai %s gemini %s", OPENAI_SHAPED, GEMINI_SHAPED, extra={"event": "t.shape"})
    log.warning("auth %s", "Authorization: Bearer abc.def.ghi", extra={"event": "t.bearer"})
    log.warning("upload to %s", UPLOAD_URL, extra={"event": "t.upload"})
    log.warning("legacy https://x.test/v1/models?key=%s&alt=json", "raw", extra={"event": "t.q"})
    text = out.getvalue()
    for leaked in (OPENAI_SHAPED, GEMINI_SHAPED, "abc.def.ghi", "AHxI1nOSECRETcapability123"):
        assert leaked not in text
    assert "key=raw" not in text
    assert "upload_protocol=resumable" in text  # only the capability goes


def test_secret_registered_later_is_redacted_too(out: io.StringIO) -> None:
    late = "rotated-key-0123456789"
    plog.register_secret(SecretStr(late))  # as the config holds it
    plog.register_secret("   ")  # blank values are ignored, not turned into a match-all
    logging.getLogger("planner.test").error("using %s", late, extra={"event": "t.late"})
    (rec,) = lines(out)
    assert rec["message"] == f"using {plog.REDACTED}"


def test_sdk_loggers_are_quiet(out: io.StringIO) -> None:
    logging.getLogger("httpx").info('HTTP Request: POST %s "200 OK"', UPLOAD_URL)
    logging.getLogger("openai").debug("Request options: %s", {"api_key": KEY})
    logging.getLogger("google_genai").info("retrying")
    logging.getLogger("httpx").warning("slow %s", "response", extra={"event": "http.slow"})
    records = lines(out)
    assert [r["message"] for r in records] == ["slow response"]
    for name in plog.QUIET_LOGGERS:
        assert logging.getLogger(name).level == logging.WARNING


def test_debug_http_lets_sdk_logs_through_still_redacted() -> None:
    stream = io.StringIO()
    handler = plog.setup_logging("DEBUG", [KEY], stream=stream, debug_http=True)
    try:
        logging.getLogger("httpx").info('HTTP Request: PUT %s "200 OK"', UPLOAD_URL)
        logging.getLogger("openai").debug("Request options: %s", {"headers": {"api-key": KEY}})
    finally:
        logging.getLogger().removeHandler(handler)
        plog.setup_logging("INFO", stream=io.StringIO())  # restore the quiet levels
        for h in [h for h in logging.getLogger().handlers if h.get_name() == "planner.stdout"]:
            logging.getLogger().removeHandler(h)
        plog.clear_secrets()
        logging.captureWarnings(False)
    text = stream.getvalue()
    assert len(text.splitlines()) == 2
    assert KEY not in text
    assert "AHxI1nOSECRETcapability123" not in text


def test_setup_twice_keeps_one_handler(out: io.StringIO) -> None:
    again = io.StringIO()
    handler = plog.setup_logging("INFO", stream=again)
    try:
        logging.getLogger("planner.test").info("once", extra={"event": "t.once"})
        ours = [h for h in logging.getLogger().handlers if h.get_name() == "planner.stdout"]
        assert ours == [handler]
        assert out.getvalue() == ""
        assert len(again.getvalue().splitlines()) == 1
    finally:
        logging.getLogger().removeHandler(handler)


def test_record_without_event_gets_a_default(out: io.StringIO) -> None:
    logging.getLogger("thirdparty").warning("plain")
    (rec,) = lines(out)
    assert rec["event"] == "log"


def test_warnings_module_is_captured_and_redacted(out: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)
        warnings.warn(f"deprecated use of {KEY}", UserWarning, stacklevel=1)
    assert "deprecated use of <redacted>" in out.getvalue()
    assert KEY not in out.getvalue()
