"""Defect 8: keys can be revoked and expire, record their last use, and bad keys are throttled.

Through the CLI (`riskatlas keys create --expires / list / revoke`, a child process on the
suite's database) and the admin API, with every effect checked over real HTTP: a revoked or
expired key gets 401 at once; an address that presents too many bad keys gets 429 with
Retry-After, for any key, while the public (no key) is still served.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from security_helpers import SecurityStack
from sqlalchemy import text

from geo.errors import ValidationError
from geo.keys import FailedKeyAttempts, create_key, parse_expiry
from tests.conftest import LiveServer

REPO = Path(__file__).resolve().parents[2]
PROBE = "/api/v1/rankings"  # public, but a presented key is looked up


def cli(stack: SecurityStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKATLAS_")}
    env.update(DATABASE_URL=stack.settings.database.url or "", COLUMNS="250",
               RISKATLAS_DATA_DIR=str(stack.settings.storage.data_dir))
    return subprocess.run([sys.executable, "-m", "api.cli", "keys", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def status_with(stack: SecurityStack, secret: str) -> int:
    with httpx.Client(base_url=stack.base_url, headers={"X-API-Key": secret}) as client:
        return client.get(PROBE).status_code


def listed(stack: SecurityStack) -> dict[str, dict]:
    with stack.client("admin") as client:
        response = client.get("/api/v1/keys")
    assert response.status_code == 200, response.text
    return {key["prefix"]: key for key in response.json()}


def test_cli_creates_lists_and_revokes_keys(security_stack: SecurityStack) -> None:
    created = cli(security_stack, "create", "--role", "analyst", "--name", "field team",
                  "--expires", "30d")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    prefix = secret.split("_")[1]
    assert f"prefix {prefix}" in created.stderr and "valid until" in created.stderr
    assert status_with(security_stack, secret) == 200

    table = cli(security_stack, "list")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.split()[:1] == [prefix])
    assert "analyst" in row and "field team" in row and "active" in row
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    assert expires in row
    assert secret not in table.stdout

    revoked = cli(security_stack, "revoke", prefix)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked the analyst key {prefix}" in revoked.stdout
    assert status_with(security_stack, secret) == 401
    row = next(line for line in cli(security_stack, "list").stdout.splitlines()
               if line.split()[:1] == [prefix])
    assert "revoked" in row

    unknown = cli(security_stack, "revoke", "00000000")
    assert unknown.returncode == 1 and "no API key with prefix" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_an_expired_key_is_refused(security_stack: SecurityStack) -> None:
    key = create_key(security_stack.engine, "expiring", "analyst",
                     datetime.now(UTC) + timedelta(hours=1))
    assert status_with(security_stack, key.secret) == 200
    with security_stack.engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET expires_at = now() - interval '1 second' "
                          "WHERE prefix = :p"), {"p": key.prefix})
    with httpx.Client(base_url=security_stack.base_url,
                      headers={"Authorization": f"Bearer {key.secret}"}) as client:
        refused = client.get(PROBE)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert "expired" in refused.json()["message"]
    assert listed(security_stack)[key.prefix]["state"] == "expired"


def test_last_use_is_recorded_to_the_minute(security_stack: SecurityStack) -> None:
    key = create_key(security_stack.engine, "last used", "analyst")
    assert listed(security_stack)[key.prefix]["last_used_at"] is None
    before = datetime.now(UTC)
    assert status_with(security_stack, key.secret) == 200
    first = listed(security_stack)[key.prefix]["last_used_at"]
    assert first is not None
    assert abs(datetime.fromisoformat(first) - before) < timedelta(seconds=30)
    assert status_with(security_stack, key.secret) == 200
    assert listed(security_stack)[key.prefix]["last_used_at"] == first  # not rewritten
    # A minute later (moved back here rather than waited for) the next use is written.
    with security_stack.engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET last_used_at = now() - interval '2 minutes' "
                          "WHERE prefix = :p"), {"p": key.prefix})
    assert status_with(security_stack, key.secret) == 200
    assert listed(security_stack)[key.prefix]["last_used_at"] != first


def test_admin_api_manages_keys(security_stack: SecurityStack) -> None:
    with security_stack.client() as anonymous, security_stack.client("analyst") as analyst:
        assert anonymous.get("/api/v1/keys").status_code == 401
        assert analyst.get("/api/v1/keys").status_code == 403
        assert analyst.post("/api/v1/keys", json={"name": "x", "role": "admin"}
                            ).status_code == 403
    with security_stack.client("admin") as admin:
        past = admin.post("/api/v1/keys", json={"name": "x", "role": "analyst",
                                                "expires_at": "2020-01-01T00:00:00Z"})
        assert past.status_code == 422 and "already passed" in past.json()["message"]
        naive = admin.post("/api/v1/keys", json={"name": "x", "role": "analyst",
                                                 "expires_at": "2030-01-01T00:00:00"})
        assert naive.status_code == 422
        assert admin.post("/api/v1/keys", json={"name": "x", "role": "root"}
                          ).status_code == 422
        created = admin.post("/api/v1/keys", json={
            "name": "partner system", "role": "uploader",
            "expires_at": "2099-06-30T12:00:00+02:00"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["secret"].startswith(f"ra_{body['prefix']}_")
        assert body["state"] == "active" and body["expires_at"].startswith("2099-06-30T10:00")
        assert status_with(security_stack, body["secret"]) == 200
        keys = admin.get("/api/v1/keys").json()
        assert all("secret" not in key and "key_hash" not in key for key in keys)
        assert body["secret"] not in admin.get("/api/v1/keys").text

        revoked = admin.post(f"/api/v1/keys/{body['prefix']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        assert status_with(security_stack, body["secret"]) == 401
        again = admin.post(f"/api/v1/keys/{body['prefix']}/revoke")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
        assert admin.post("/api/v1/keys/00000000/revoke").status_code == 404
        assert admin.post("/api/v1/keys/..%2Fetc/revoke").status_code in (404, 422)


def test_failed_key_attempts_are_throttled_per_address(security_stack: SecurityStack) -> None:
    # An app of its own, so the lock-out does not reach the suite's shared server.
    server = LiveServer(security_stack.settings)
    server.app.state.key_attempts = FailedKeyAttempts(limit=5, window_s=60)
    good = security_stack.keys["analyst"]
    with server, httpx.Client(base_url=server.base_url) as client:
        for attempt in range(5):
            bad = client.get(PROBE, headers={"X-API-Key": f"ra_{attempt:08x}_guess"})
            assert bad.status_code == 401, attempt
        throttled = client.get(PROBE, headers={"X-API-Key": "ra_00000009_guess"})
        assert throttled.status_code == 429
        assert throttled.json()["code"] == "too_many_requests"
        retry_after = int(throttled.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        # Locked out for any key (a guess that happened to be right would learn nothing)...
        assert client.get(PROBE, headers={"X-API-Key": good}).status_code == 429
        # ...while the public, without a key, is served as before.
        assert client.get(PROBE).status_code == 200
    # The shared server counts its own failures: the good key still works there.
    assert status_with(security_stack, good) == 200


def test_failures_age_out_and_memory_stays_bounded() -> None:
    now = [1000.0]
    attempts = FailedKeyAttempts(limit=3, window_s=60, max_clients=100,
                                 clock=lambda: now[0])
    for _ in range(3):
        attempts.failed("10.0.0.1")
        now[0] += 10
    assert attempts.retry_after("10.0.0.1") == 30  # now t=1030; the first leaves at 1060
    assert attempts.retry_after("10.0.0.2") is None
    now[0] += 30
    assert attempts.retry_after("10.0.0.1") is None
    for i in range(1000):
        attempts.failed(f"192.0.2.{i}")
    assert len(attempts._failures) == 100


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))])
def test_expiry_durations(text: str, expected: timedelta) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry(text, now) == now + expected


def test_expiry_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("2026-12-31", now) == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_expiry("2026-06-01T08:00:00+03:00", now) == datetime(2026, 6, 1, 5,
                                                                      tzinfo=UTC)
    with pytest.raises(ValidationError):
        parse_expiry("2025-12-31", now)
    with pytest.raises(ValidationError):
        parse_expiry("2026-13-45", now)
