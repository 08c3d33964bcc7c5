"""The API's documentation works on a hospital network with no internet: /docs and every asset
it loads are served by the service itself, and /openapi.yaml is the curated document."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient

from adapters.bootstrap import http_app
from adapters.jobs import JobBoard

ROOT = Path(__file__).resolve().parents[2]


def client() -> TestClient:
    return TestClient(http_app(SimpleNamespace(database_ok=lambda: True, jobs=JobBoard([]))))


def test_the_docs_page_loads_nothing_from_another_host() -> None:
    http = client()
    page = http.get("/docs")
    assert page.status_code == 200
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    loaded += re.findall(r"url: '([^']+)'", page.text)
    assert loaded, page.text
    assert not [url for url in loaded if re.match(r"(https?:)?//", url)], loaded
    for url in loaded:
        assert http.get(url).status_code == 200, url


def test_openapi_yaml_is_served_as_the_document_in_the_source_tree() -> None:
    answer = client().get("/openapi.yaml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/yaml")
    assert answer.text == (ROOT / "openapi.yaml").read_text(encoding="utf-8")
