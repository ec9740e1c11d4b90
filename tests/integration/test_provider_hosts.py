"""Each API key goes only to its own provider's host (or the operator's ``base_url``).

Two views of the same rule, neither using the sandbox: every provider kind and mode is built
from a configuration as ``planner run`` builds it, and the SDK clients' base URLs are read; then
``planner run --once`` runs as a subprocess with fake keys through a local HTTPS proxy that
records the hosts the SDKs ask to CONNECT to (the proxy refuses every tunnel, so the calls fail
as they would offline, and the run must carry on without a traceback).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.config import load_config
from planner.providers.gemini import GeminiProvider
from planner.providers.openai import OpenAIProvider
from planner.runtime.wiring import build_providers
from tests.conftest import REPO

GEMINI = "generativelanguage.googleapis.com"
OPENAI = "api.openai.com"
FAKE_KEYS = {"OPENAI_API_KEY": "sk-fake-openai-0000", "GEMINI_API_KEY": "fake-gemini-0000"}


def _config(tmp_path: Path, provider: dict[str, Any], models: list[str]) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    doc = {
        "state_dir": str(tmp_path / "state"),
        "providers": {"p": provider},
        "sources": {
            "spool": {"kind": "jsonl_dir", "path": str(spool), "sink": "out", "settle": "0s"}
        },
        "sinks": {"out": {"kind": "jsonl_dir", "path": str(tmp_path / "out")}},
        "policies": {"default": {"min_savings_usd": "0"}},
    }
    path = tmp_path / "planner.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _gemini_client_base(client: Any) -> str:
    return str(client._api_client._http_options.base_url).rstrip("/") + "/"


def _hosts(provider: Any) -> dict[str, str]:
    """Where each SDK client of a built provider would connect."""
    if isinstance(provider, GeminiProvider):
        return {"api": _gemini_client_base(provider._http._client)}
    assert isinstance(provider, OpenAIProvider)
    hosts = {"api": str(provider._client.base_url)}
    if provider._gemini_files is not None:
        hosts["files"] = _gemini_client_base(provider._gemini_files._client)
    return hosts


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ({"kind": "openai"}, {"api": "https://api.openai.com/v1/"}),
        ({"kind": "gemini"}, {"api": "https://generativelanguage.googleapis.com/"}),
        (
            {"kind": "gemini", "openai_compat": True},
            {
                "api": "https://generativelanguage.googleapis.com/v1beta/openai/",
                "files": "https://generativelanguage.googleapis.com/",
            },
        ),
        (
            {"kind": "openai", "base_url": "https://llm.internal.example/v1"},
            {"api": "https://llm.internal.example/v1/"},
        ),
        (
            {"kind": "gemini", "base_url": "https://gemini-gw.internal.example/"},
            {"api": "https://gemini-gw.internal.example/"},
        ),
        (
            {
                "kind": "gemini",
                "openai_compat": True,
                "base_url": "https://gemini-gw.internal.example/v1beta/openai/",
            },
            {
                "api": "https://gemini-gw.internal.example/v1beta/openai/",
                "files": "https://gemini-gw.internal.example/",
            },
        ),
    ],
    ids=["openai", "gemini", "gemini-compat", "openai-base", "gemini-base", "compat-base"],
)
def test_every_provider_kind_and_mode_connects_to_its_own_host(
    tmp_path: Path, provider: dict[str, Any], expected: dict[str, str]
) -> None:
    cfg = load_config(_config(tmp_path, provider, []))
    built = build_providers(cfg, None, FAKE_KEYS)
    assert _hosts(built["p"]) == expected


REFUSED = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _ConnectRecorder(socketserver.ThreadingTCPServer):
    """An HTTPS proxy on loopback that records each CONNECT target and refuses the tunnel."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ConnectHandler)


class _ConnectHandler(socketserver.StreamRequestHandler):
    server: _ConnectRecorder

    def handle(self) -> None:
        request_line = self.rfile.readline(8192).decode("latin-1").split()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass  # headers
        if len(request_line) >= 2:
            with self.server.lock:
                self.server.targets.append(
                    request_line[1] if request_line[0] == "CONNECT" else "PLAIN " + request_line[1]
                )
        self.wfile.write(REFUSED)


@pytest.fixture()
def proxy() -> Iterator[_ConnectRecorder]:
    server = _ConnectRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _chat(model: str) -> dict[str, Any]:
    """An OpenAI batch line: OpenAI serves it, and so does Gemini's compat layer."""
    return {
        "custom_id": f"chat-{model}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "Say hello."}]},
    }


SPOOL = [
    _chat("gpt-4.1-mini"),
    _chat("gemini-3.5-flash-lite"),
    {"id": "native-1", "model": "gemini-3.5-flash-lite", "prompt": "Say hello."},
    {"id": "emb-1", "model": "text-embedding-3-small", "text": "Say hello."},
]


@pytest.mark.parametrize(
    ("provider", "key", "host"),
    [
        ({"kind": "openai"}, "OPENAI_API_KEY", OPENAI),
        ({"kind": "gemini"}, "GEMINI_API_KEY", GEMINI),
        ({"kind": "gemini", "openai_compat": True}, "GEMINI_API_KEY", GEMINI),
    ],
    ids=["openai", "gemini", "gemini-compat"],
)
def test_run_once_sends_each_key_only_to_its_host(
    tmp_path: Path, proxy: _ConnectRecorder, provider: dict[str, Any], key: str, host: str
) -> None:
    config = _config(tmp_path, provider, [])
    (tmp_path / "spool" / "work.jsonl").write_text("".join(json.dumps(x) + "\n" for x in SPOOL))
    address = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = {
        name: value
        for name, value in os.environ.items()
        if "proxy" not in name.lower() and name not in FAKE_KEYS
    }
    env.update({key: FAKE_KEYS[key], "HTTPS_PROXY": address, "HTTP_PROXY": address})
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "planner", "run", "--once", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=90,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr
    assert FAKE_KEYS[key] not in done.stdout + done.stderr
    assert proxy.targets, "no provider call went through the proxy"
    assert set(proxy.targets) == {f"{host}:443"}, proxy.targets


def test_proxy_records_connect_targets(proxy: _ConnectRecorder) -> None:
    """The recorder itself: a CONNECT is recorded and refused."""
    with socket.create_connection(proxy.server_address) as sock:
        sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 502")
    assert proxy.targets == ["example.org:443"]
