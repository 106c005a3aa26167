"""Recovery after a crash: dead jobs fail, their staged files go, live uploads stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from geo.jobs import UPLOAD_GRACE_S, create_job, recover_interrupted_jobs


def test_recovery_fails_dead_jobs_and_spares_live_uploads(db_url: str, tmp_path: Path) -> None:
    engine = create_engine(db_url)
    try:
        job_id = create_job(engine, "test", {}, lock_key="test:recovery")
        with engine.begin() as conn:  # as if a process that has since died had claimed it
            conn.execute(text("UPDATE jobs SET worker_pid = 2147483000, status = 'running' "
                              "WHERE id = :id"), {"id": job_id})
        staging = tmp_path / "staging"
        dead_job_dir = staging / str(job_id)
        live_upload = staging / "upload-live"
        abandoned_upload = staging / "upload-abandoned"
        for folder in (dead_job_dir, live_upload, abandoned_upload):
            folder.mkdir(parents=True)
            (folder / "upload.bin").write_bytes(b"x")
        old = time.time() - UPLOAD_GRACE_S - 60
        for path in (abandoned_upload, abandoned_upload / "upload.bin"):
            os.utime(path, (old, old))

        assert recover_interrupted_jobs(engine, staging) >= 1
        with engine.connect() as conn:
            status, message = conn.execute(text("SELECT status, message FROM jobs WHERE id = :id"),
                                           {"id": job_id}).one()
        assert status == "failed" and "interrupted" in message
        assert not dead_job_dir.exists() and not abandoned_upload.exists()
        assert live_upload.exists()
    finally:
        engine.dispose()
