"""Which run: the newest completed run is `latest`."""

from __future__ import annotations

from sqlalchemy import Engine, text


def latest_run_id(engine: Engine) -> int | None:
    """Return the id of the newest succeeded run, or None."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT id FROM score_runs WHERE status = 'succeeded' "
            "ORDER BY completed_at DESC, id DESC LIMIT 1")).scalar()
