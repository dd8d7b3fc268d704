"""Shared fixtures for fbenv's own tests."""

from __future__ import annotations

import pytest
from llm_server import OpenAICompatServer


@pytest.fixture
def llm_server(monkeypatch):
    """A started loopback OpenAI-compatible server (see llm_server.py); stopped afterwards.

    Rules: "echo <x>" -> "<x>", "seed" -> "seed={seed}"; anything else -> "OK".
    Proxy variables are cleared so a CI proxy cannot intercept loopback traffic.
    """
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = OpenAICompatServer(rules=[(r"^echo (.*)$", "{0}"), (r"seed", "seed={seed}")])
    with server:
        yield server
