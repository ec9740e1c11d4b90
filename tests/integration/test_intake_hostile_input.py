"""Input no store can hold never reaches it as a crash: on SQLite and on PostgreSQL (whose text
holds no NUL and no lone surrogate), every such request gets a precise 4xx or a quarantined
line, never a 5xx; body limits and tokens are checked before anything is read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from planner.config.prices import shipped_catalog
from planner.config.schema import IntakeConfig
from planner.errors import InputError
from planner.runtime.intake.server import IntakeServer, build_service, serve_intake
from planner.store.engine import make_engine, make_session_factory, upgrade
from tests.contract.store_backends import BACKENDS, backend_url

TOKEN = "hostile-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IntakeServer]:
    with backend_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        cfg = IntakeConfig.model_validate(
            {"enabled": True, "tokens_env": "TOKENS", "max_body": "2KB"},
            context={"base_dir": tmp_path},
        )
        service = build_service(cfg, make_session_factory(engine), shipped_catalog().family_of)
        running = serve_intake(cfg, service, {"TOKENS": TOKEN}, port=0)
        try:
            yield running
        finally:
            running.stop()
            engine.dispose()


def test_ids_no_store_can_hold_are_not_found(server: IntakeServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH) as http:
        for path in ("/v1/files/a%00b", "/v1/batches/a%00b", "/requests/a%00b"):
            answer = http.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        assert http.get("/v1/files", params={"purpose": "a\x00", "after": "x"}).json()["data"] == []
        assert http.get("/v1/batches", params={"after": "a\x00"}).json()["data"] == []
        body = (
            '{"input_file_id": "\\ud800", "endpoint": "/v1/chat/completions", '
            '"completion_window": "24h"}'
        )
        answer = http.post(
            "/v1/batches", content=body, headers={"Content-Type": "application/json"}
        )
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, "input_file_id")
        uploaded = http.post(
            "/v1/files",
            files={"file": ("in.jsonl", b"{}\n", "application/jsonl")},
            data={"purpose": "batch"},
        ).json()
        body = json.dumps(
            {
                "input_file_id": uploaded["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"k": "\ud800"},
            }
        )
        answer = http.post(
            "/v1/batches", content=body, headers={"Content-Type": "application/json"}
        )
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, "metadata.k")


def test_lines_with_nul_and_surrogates_are_quarantined_not_crashed(server: IntakeServer) -> None:
    lines = [
        b'{"custom_id": "a\\u0000b", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
        b'{"custom_id": "\\ud800", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
        b"raw \x00 nul",
        b"\xff\xfe not utf-8",
    ]
    with httpx.Client(base_url=server.url, headers=AUTH) as http:
        uploaded = http.post(
            "/v1/files",
            files={"file": ("in.jsonl", b"\n".join(lines), "application/jsonl")},
            data={"purpose": "batch"},
        ).json()
        batch = http.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        ).json()
        assert batch["status"] == "completed", batch
        assert batch["request_counts"] == {"total": 4, "completed": 0, "failed": 4}
        errors = http.get(f"/v1/files/{batch['error_file_id']}/content").text.splitlines()
        codes = [json.loads(line)["error"]["code"] for line in errors]
        assert codes == ["encoding", "encoding", "encoding", "encoding"]


def test_body_limit_and_token_come_first(server: IntakeServer) -> None:
    big = json.dumps([{"id": f"r{i}", "prompt": "x" * 50} for i in range(60)])
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/requests", content=big, headers=AUTH).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b"x" * 500

        answer = http.post("/requests", content=chunks(), headers=AUTH)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
        assert http.post("/requests", content=big).status_code == 401
        wrong = {"Authorization": f"Bearer {TOKEN}x"}
        assert http.post("/requests", content="{}", headers=wrong).status_code == 401
        assert http.get("/openapi.json").status_code == 200  # the document is public
        answer = http.put("/v1/files", headers=AUTH)
        assert answer.status_code == 405 and answer.headers["allow"] == "GET, POST"
        answer = http.post("/requests", content="[1]", headers=AUTH)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_body"
        answer = http.post(
            "/requests", content="{}", headers={**AUTH, "Content-Type": "text/plain"}
        )
        assert answer.status_code == 415


def test_a_busy_port_is_one_line_naming_the_setting(server: IntakeServer) -> None:
    cfg = IntakeConfig.model_validate(
        {"enabled": True, "tokens_env": "TOKENS", "listen": f"127.0.0.1:{server.port}"},
        context={"base_dir": Path(".")},
    )
    service = build_service(cfg, lambda: None, shipped_catalog().family_of)  # type: ignore[arg-type,return-value]
    with pytest.raises(InputError, match=rf"^intake.listen 127.0.0.1:{server.port}: cannot listen"):
        serve_intake(cfg, service, {"TOKENS": TOKEN})
