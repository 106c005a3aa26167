"""Health, landing page and OpenAPI docs over real HTTP."""

from __future__ import annotations

import httpx


def test_healthz_reports_database_up(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "up"
    assert body["database"]["postgis"].startswith("3.")
    assert body["database"]["schema_revision"]


def test_landing_page_links_to_docs(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/docs" in response.text and "riskatlas" in response.text


def test_openapi_documents_the_api(http: httpx.Client) -> None:
    assert http.get("/docs").status_code == 200
    schema = http.get("/openapi.json").json()
    assert "/healthz" in schema["paths"]
    assert "/api/v1/jobs/{job_id}" in schema["paths"]


def test_unknown_job_is_404_in_the_error_shape(http: httpx.Client) -> None:
    response = http.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message", "details"}
    bad = http.get("/api/v1/jobs/not-a-uuid")
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_input"
