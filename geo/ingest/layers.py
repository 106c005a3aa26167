"""Named layers across kinds: list them, delete one (all or nothing, never under a running run).

A named layer is what a new upload of the same name replaces: a hazard or population raster
(its versions), an event layer, an institution inventory. Deleting takes the same lock an
upload of that layer takes, and is refused while a score run is queued or running, since the
run reads every current layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from geo.errors import ConflictError, NotFoundError, ValidationError
from geo.jobs import create_job, run_job
from geo.settings import Settings

LAYER_KINDS = ("hazard", "population", "events", "institutions")


def list_named_layers(engine: Engine) -> list[dict[str, Any]]:
    """Return every named layer: kind, name, version, rows, unit of rows, source file, loaded."""
    with engine.connect() as conn:
        rasters = conn.execute(text(
            "SELECT l.role AS kind, l.name, max(v.version) AS version, count(v.id) AS rows, "
            "'versions' AS unit, (SELECT d.source_filename FROM raster_versions w JOIN datasets d "
            "ON d.id = w.dataset_id WHERE w.layer_id = l.id ORDER BY w.version DESC LIMIT 1) "
            "AS source, max(v.created_at) AS loaded FROM raster_layers l "
            "LEFT JOIN raster_versions v ON v.layer_id = l.id GROUP BY l.id ORDER BY l.name"
        )).mappings().all()
        events = conn.execute(text(
            "SELECT 'events' AS kind, l.name, l.version, "
            "(SELECT count(*) FROM events e WHERE e.layer_id = l.id) AS rows, 'events' AS unit, "
            "d.source_filename AS source, d.created_at AS loaded FROM event_layers l "
            "LEFT JOIN datasets d ON d.id = l.dataset_id ORDER BY l.name")).mappings().all()
        institutions = conn.execute(text(
            "SELECT 'institutions' AS kind, l.name, l.version, "
            "(SELECT count(*) FROM institutions i WHERE i.layer_id = l.id) AS rows, "
            "'institutions' AS unit, d.source_filename AS source, d.created_at AS loaded "
            "FROM institution_layers l LEFT JOIN datasets d ON d.id = l.dataset_id "
            "ORDER BY l.name")).mappings().all()
    return [
        {**dict(row), "version": int(row["version"] or 0), "rows": int(row["rows"] or 0),
         "loaded": row["loaded"].isoformat() if row["loaded"] else None}
        for row in [*rasters, *events, *institutions]
    ]


def delete_named_layer(engine: Engine, settings: Settings, kind: str, name: str
                       ) -> dict[str, Any]:
    """Delete the named layer of `kind` with its rows (and raster files); return what went.

    `settings` is taken so that a later object-store backend can remove remote COGs too.
    """
    if kind not in LAYER_KINDS:
        raise ValidationError(
            f"layers of kind {kind!r} cannot be deleted; choose one of {', '.join(LAYER_KINDS)}",
            [{"field": "kind", "problem": f"not one of {', '.join(LAYER_KINDS)}"}])
    _refuse_during_runs(engine, kind, name)
    # The upload lock of this layer: no upload of it can start while it is being deleted.
    lock = f"raster:{name}" if kind in ("hazard", "population") else f"{kind}:{name}"
    job_id = create_job(engine, "layers:delete", {"kind": kind, "name": name}, lock)
    return run_job(engine, job_id, lambda report: _delete(engine, kind, name))


def _refuse_during_runs(engine: Engine, kind: str, name: str) -> None:
    with engine.connect() as conn:
        busy = conn.execute(text(
            "SELECT id FROM score_runs WHERE status IN ('queued', 'running') ORDER BY id LIMIT 1"
        )).scalar()
    if busy is not None:
        raise ConflictError(
            f"score run {busy} is reading every current layer; delete the {kind} layer "
            f"{name!r} when it has finished",
            {"run_id": busy, "kind": kind, "name": name})


def _delete(engine: Engine, kind: str, name: str) -> dict[str, Any]:
    paths: list[Path] = []
    with engine.begin() as conn:
        if kind in ("hazard", "population"):
            result = _delete_raster_layer(conn, kind, name, paths)
        else:
            table = {"events": "event_layers", "institutions": "institution_layers"}[kind]
            rows_table = {"events": "events", "institutions": "institutions"}[kind]
            layer_id = _layer_id(conn, table, name, kind)
            rows = conn.execute(text(f"DELETE FROM {rows_table} WHERE layer_id = :id"),
                                {"id": layer_id}).rowcount
            conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": layer_id})
            result = {"kind": kind, "name": name, "rows": rows, "unit": rows_table}
    # Files go only once the rows are gone for good.
    for path in paths:
        path.unlink(missing_ok=True)
    return result


def _layer_id(conn: Connection, table: str, name: str, kind: str) -> int:
    assert table in ("event_layers", "institution_layers")
    layer_id = conn.execute(text(f"SELECT id FROM {table} WHERE name = :name FOR UPDATE"),
                            {"name": name}).scalar()
    if layer_id is None:
        raise NotFoundError(f"no {kind} layer called {name!r}; `riskatlas layers list` shows "
                            "the layers")
    return int(layer_id)


def _delete_raster_layer(conn: Connection, kind: str, name: str, paths: list[Path]
                         ) -> dict[str, Any]:
    row = conn.execute(text("SELECT id FROM raster_layers WHERE name = :name AND role = :role "
                            "FOR UPDATE"), {"name": name, "role": kind}).scalar()
    if row is None:
        raise NotFoundError(f"no {kind} layer called {name!r}; `riskatlas layers list` shows "
                            "the layers")
    found = conn.execute(text("SELECT path FROM raster_versions WHERE layer_id = :id"),
                         {"id": row}).scalars().all()
    paths.extend(Path(p) for p in found)
    conn.execute(text("DELETE FROM raster_versions WHERE layer_id = :id"), {"id": row})
    conn.execute(text("DELETE FROM raster_layers WHERE id = :id"), {"id": row})
    return {"kind": kind, "name": name, "rows": len(found), "unit": "versions"}
