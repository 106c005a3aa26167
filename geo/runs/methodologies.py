"""Methodology documents stored as versions: a run names the version it used."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text

from geo.analysis.methodology import load_default_methodology, parse_methodology


def ensure_methodology(engine: Engine, document: dict[str, Any] | None = None) -> int:
    """Store a methodology document (default: the shipped one) as a new version if it changed."""
    methodology = parse_methodology(document) if document else load_default_methodology()
    body = methodology.model_dump(mode="json")
    with engine.begin() as conn:
        latest = conn.execute(text(
            "SELECT id, version, document FROM methodologies WHERE name = :name "
            "ORDER BY version DESC LIMIT 1"), {"name": methodology.name}).first()
        if latest is not None and latest.document == body:
            return int(latest.id)
        version = (latest.version + 1) if latest is not None else 1
        return int(conn.execute(text(
            "INSERT INTO methodologies (name, version, document) VALUES (:name, :version, "
            "CAST(:doc AS jsonb)) RETURNING id"),
            {"name": methodology.name, "version": version, "doc": json.dumps(body)},
        ).scalar_one())
