"""Load a validated upload into PostGIS: one transaction, all or nothing, rows and files alike.

`ingest()` is the one code path behind `riskatlas ingest` and `POST /api/v1/uploads/{kind}`.
Rows go in with COPY into a temporary table and one INSERT ... SELECT, inside a single
transaction that also records the dataset; a raster's COG is written in the job's staging
directory and renamed into place inside that transaction, and removed again if it fails.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text

from geo.errors import ValidationError
from geo.ingest import _columns as cols
from geo.ingest import rasters, readers
from geo.ingest._problems import fail, problem
from geo.ingest.files import UploadedFile, open_upload
from geo.ingest.households import load_households
from geo.ingest.options import parse_options
from geo.ingest.tile_geometry import refresh_tile_geometry
from geo.settings import Settings

Progress = Callable[[float, str], None]


def ingest(
    engine: Engine,
    settings: Settings,
    kind: str,
    path: Path,
    original_name: str,
    raw_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    job_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Validate and load one file of `kind`; return a summary (dataset id, rows, warnings)."""
    options = parse_options(kind, raw_options or {})
    report = progress or (lambda fraction, message: None)
    work_id = str(job_id) if job_id else uuid.uuid4().hex
    workdir = settings.storage.staging_dir / work_id / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report(0.01, "checking the file")
        with open_upload(path, original_name, max_bytes=settings.storage.max_upload_bytes,
                         workdir=workdir) as upload:
            loader = LOADERS[kind]
            return loader(engine, settings, upload, options, report, work_id)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- shared steps -------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _record_dataset(
    conn: Connection, kind: str, name: str, upload: UploadedFile, rows: int,
    options: Any, report: dict[str, Any], work_id: str,
) -> int:
    job_id = _uuid_or_none(work_id)
    if job_id is not None:
        exists = conn.execute(text("SELECT 1 FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
        job_id = job_id if exists else None
    return int(conn.execute(
        text(
            "INSERT INTO datasets (kind, name, source_filename, sha256, row_count, options, "
            "report, job_id) VALUES (:kind, :name, :src, :sha, :rows, "
            "CAST(:options AS jsonb), CAST(:report AS jsonb), :job) RETURNING id"
        ),
        {"kind": kind, "name": name, "src": upload.original_name, "sha": file_sha256(upload.path),
         "rows": rows, "options": options.model_dump_json(), "report": _json(report),
         "job": job_id},
    ).scalar_one())


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str, ensure_ascii=False)


def _copy(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows into a table we named (never a user string)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _ewkb(geometries: gpd.GeoSeries) -> list[str]:
    with_srid = shapely.set_srid(np.asarray(geometries.values), 4326)
    return list(shapely.to_wkb(with_srid, hex=True, include_srid=True))


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _locality_ids(conn: Connection, codes: Iterable[str]) -> dict[str, int]:
    rows = conn.execute(text("SELECT code, id FROM localities WHERE code = ANY(:codes)"),
                        {"codes": list(set(codes))}).all()
    return {code: locality_id for code, locality_id in rows}


def _unknown_codes_error(file_name: str, frame: pd.DataFrame, column: str, known: set[str],
                         what: str = "locality code", hint: str = "load it first") -> None:
    """Raise naming each row (or feature) whose code is unknown, by the file's own field name."""
    unknown = frame[~frame[column].isin(known)]
    if unknown.empty:
        return
    # The normalisers record which of the file's columns became `column` (e.g. ADM1_PCODE
    # became parent_code); the user knows their field, not ours.
    field = frame.attrs.get("source_fields", {}).get(column, column)
    location = cols.location_label(frame)
    fail([
        problem(file_name, f"unknown {what} {value!r} ({hint})", field=field,
                **{location: label.item() if isinstance(label, np.generic) else label})
        for label, value in unknown[column].items()
    ])


# -- localities ---------------------------------------------------------------------------
def load_localities(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                    report: Progress, work_id: str) -> dict[str, Any]:
    """Load admin units: upsert by code, parents checked, geometries repaired and counted."""
    frame, warnings = readers.localities_from_upload(upload, options)
    report(0.5, f"loading {len(frame)} localities")
    with engine.begin() as conn:
        inferred = _infer_parents_by_prefix(conn, frame)
        if inferred:
            warnings.append(f"parent codes of {inferred} localities taken from their P-code prefix")
        known = set(_locality_ids(conn, frame["parent_code"].dropna()))
        parents = frame["parent_code"].dropna()
        missing = parents[~parents.isin(known | set(frame["code"]))]
        if not missing.empty:
            _unknown_codes_error(upload.original_name, frame.loc[missing.index], "parent_code",
                                 known | set(frame["code"]), "parent code")
        conn.execute(text(
            "CREATE TEMP TABLE incoming_localities (code text, name text, level smallint, "
            "parent_code text, population double precision, population_year smallint, "
            "names jsonb, geom geometry) ON COMMIT DROP"
        ))
        rows = zip(frame["code"], frame["name"], frame["level"], frame["parent_code"],
                   frame["population"], frame.get("population_year", [None] * len(frame)),
                   frame["names"].map(_json), _ewkb(frame.geometry), strict=True)
        _copy(conn, "incoming_localities",
              ["code", "name", "level", "parent_code", "population", "population_year", "names",
               "geom"], ([_clean(v) for v in row] for row in rows))
        dataset_id = _record_dataset(conn, "localities", upload.original_name, upload,
                                     len(frame), options, {"warnings": warnings}, work_id)
        conn.execute(text(
            "INSERT INTO localities (code, name, level, parent_code, population, "
            "population_year, names, dataset_id, area_km2, geom) "
            "SELECT code, name, level, parent_code, population, population_year, names, :ds, "
            "ST_Area(geom::geography) / 1e6, ST_Multi(geom) FROM incoming_localities "
            "ORDER BY level "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level, "
            "parent_code = EXCLUDED.parent_code, "
            "population = COALESCE(EXCLUDED.population, localities.population), "
            "population_year = COALESCE(EXCLUDED.population_year, localities.population_year), "
            "names = EXCLUDED.names, dataset_id = EXCLUDED.dataset_id, "
            "area_km2 = EXCLUDED.area_km2, geom = EXCLUDED.geom"
        ), {"ds": dataset_id})
        report(0.8, "simplifying outlines for the map tiles")
        loaded = conn.execute(text("SELECT id FROM localities WHERE dataset_id = :ds"),
                              {"ds": dataset_id}).scalars().all()
        refresh_tile_geometry(conn, loaded)
    report(1.0, "done")
    levels = {str(k): int(v) for k, v in frame["level"].value_counts().sort_index().items()}
    return {"dataset_id": dataset_id, "rows": len(frame), "levels": levels, "warnings": warnings}


def _infer_parents_by_prefix(conn: Connection, frame: gpd.GeoDataFrame) -> int:
    """Fill missing parents with the one-level-up code that prefixes the code (P-code rule)."""
    orphans = frame["parent_code"].isna() & (frame["level"] > 0)
    if not orphans.any():
        return 0
    rows = conn.execute(text("SELECT code, level FROM localities")).all()
    by_level: dict[int, set[str]] = {}
    for code, level in [*rows, *zip(frame["code"], frame["level"], strict=True)]:
        by_level.setdefault(int(level), set()).add(code)
    filled = 0
    for index in frame.index[orphans]:
        code, level = frame.at[index, "code"], int(frame.at[index, "level"])
        candidates = [p for p in by_level.get(level - 1, ()) if code.startswith(p) and p != code]
        if candidates:
            frame.at[index, "parent_code"] = max(candidates, key=len)
            filled += 1
    return filled


# -- population (table or raster) ----------------------------------------------------------
def load_population(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                    report: Progress, work_id: str) -> dict[str, Any]:
    """Load a population table onto localities, or a population raster as a layer version."""
    if upload.is_raster:
        return _load_raster(engine, settings, upload, options, report, work_id, role="population")
    frame = readers.population_from_upload(upload, options)
    with engine.begin() as conn:
        known = _locality_ids(conn, frame["code"])
        _unknown_codes_error(upload.original_name, frame, "code", set(known))
        conn.execute(text(
            "CREATE TEMP TABLE incoming_population (code text, population double precision, "
            "year smallint) ON COMMIT DROP"
        ))
        _copy(conn, "incoming_population", ["code", "population", "year"],
              ([_clean(v) for v in row] for row in
               zip(frame["code"], frame["population"], frame["year"], strict=True)))
        dataset_id = _record_dataset(conn, "population", options.name, upload, len(frame),
                                     options, {}, work_id)
        conn.execute(text(
            "UPDATE localities l SET population = p.population, "
            "population_year = COALESCE(p.year, l.population_year) "
            "FROM incoming_population p WHERE l.code = p.code"
        ))
    report(1.0, "done")
    levels = conn_levels(engine, frame["code"])
    by_level = frame.assign(level=frame["code"].map(levels)).groupby("level")["population"]
    return {"dataset_id": dataset_id, "rows": len(frame),
            "population_by_level": {str(k): float(v) for k, v in by_level.sum().items()}}


# -- rasters ------------------------------------------------------------------------------
def load_hazard(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                report: Progress, work_id: str) -> dict[str, Any]:
    """Load a hazard raster as a new version of the named layer."""
    if not upload.is_raster:
        raise ValidationError(
            f"{upload.original_name}: a hazard layer must be a raster (GeoTIFF or a zipped "
            "ESRI ASCII grid with its .prj)",
            [{"file": upload.original_name, "problem": "not a raster"}],
        )
    return _load_raster(engine, settings, upload, options, report, work_id, role="hazard")


def _load_raster(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                 report: Progress, work_id: str, role: str) -> dict[str, Any]:
    info = rasters.inspect_raster(upload, max_cells=settings.storage.max_raster_cells)
    staged = upload.directory / "cog.tif"
    density = role == "population" and options.value_kind == "density"
    stats = rasters.write_cog(upload, staged, density_to_count=density,
                              progress=lambda f: report(0.05 + 0.85 * f, "writing the COG"))
    report(0.92, "recording the layer")
    final: Path | None = None
    try:
        with engine.begin() as conn:
            layer_id = _upsert_layer(conn, role, options)
            version = int(conn.execute(
                text("SELECT COALESCE(MAX(version), 0) + 1 FROM raster_versions "
                     "WHERE layer_id = :id"), {"id": layer_id}).scalar_one())
            final = settings.storage.raster_dir / str(layer_id) / f"v{version}-{work_id}.tif"
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staged, final)
            dataset_id = _record_dataset(conn, role, options.name, upload, 1, options,
                                         {"statistics": _stats_dict(stats)}, work_id)
            west, south, east, north = info.bounds_4326
            conn.execute(text(
                "INSERT INTO raster_versions (layer_id, version, path, crs, width, height, "
                "resolution, nodata, dtype, value_kind, statistics, dataset_id, footprint) "
                "VALUES (:layer, :version, :path, :crs, :w, :h, CAST(:res AS jsonb), :nodata, "
                ":dtype, :value_kind, CAST(:stats AS jsonb), :ds, "
                "ST_MakeEnvelope(:west, :south, :east, :north, 4326))"
            ), {"layer": layer_id, "version": version, "path": str(final), "crs": info.crs,
                "w": info.width, "h": info.height, "res": _json(list(info.resolution)),
                "nodata": stats.info.nodata, "dtype": stats.info.dtype,
                "value_kind": "count" if role == "population" else "hazard",
                "stats": _json(_stats_dict(stats)), "ds": dataset_id,
                "west": west, "south": south, "east": east, "north": north})
    except BaseException:
        if final is not None:
            final.unlink(missing_ok=True)
        raise
    report(1.0, "done")
    return {"dataset_id": dataset_id, "layer_id": layer_id, "layer": options.name,
            "version": version, "statistics": _stats_dict(stats)}


def _stats_dict(stats: rasters.RasterStats) -> dict[str, Any]:
    return {
        "min": stats.min, "max": stats.max, "mean": stats.mean, "std": stats.std,
        "total": stats.total, "valid_count": stats.valid_count,
        "nodata_count": stats.nodata_count, "percentiles": {str(k): v for k, v in
                                                            stats.percentiles.items()},
        "histogram": {"edges": list(stats.histogram_edges),
                      "counts": list(stats.histogram_counts)},
        "approximate": stats.approximate, "density_converted": stats.density_converted,
    }


def conn_levels(engine: Engine, codes: pd.Series) -> dict[str, int]:
    """Return the admin level of each known code."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT code, level FROM localities WHERE code = ANY(:c)"),
                            {"c": list(codes)}).all()
    return {code: level for code, level in rows}


def _upsert_layer(conn: Connection, role: str, options: Any) -> int:
    existing = conn.execute(
        text("SELECT id, role FROM raster_layers WHERE name = :name FOR UPDATE"),
        {"name": options.name},
    ).first()
    if existing is not None and existing.role != role:
        raise ValidationError(
            f"a {existing.role} layer is already called {options.name!r}; choose another name",
            [{"field": "name", "problem": f"name taken by a {existing.role} layer"}],
        )
    values = {
        "name": options.name, "role": role, "kind": getattr(options, "kind", "population"),
        "unit": getattr(options, "unit", None) or ("people" if role == "population" else None),
        "polarity": getattr(options, "polarity", "higher_is_worse"),
        "threshold": getattr(options, "threshold", None),
        "levels": _json(getattr(options, "level_thresholds", None)),
        "share": getattr(options, "level_share", 0.1),
        "description": getattr(options, "description", None),
    }
    return int(conn.execute(text(
        "INSERT INTO raster_layers (name, role, kind, unit, polarity, threshold, "
        "level_thresholds, level_share, description) VALUES (:name, :role, :kind, :unit, "
        ":polarity, :threshold, CAST(:levels AS jsonb), :share, :description) "
        "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, unit = EXCLUDED.unit, "
        "polarity = EXCLUDED.polarity, threshold = EXCLUDED.threshold, "
        "level_thresholds = EXCLUDED.level_thresholds, level_share = EXCLUDED.level_share, "
        "description = COALESCE(EXCLUDED.description, raster_layers.description) RETURNING id"
    ), values).scalar_one())


def remove_orphan_rasters(engine: Engine, raster_dir: Path) -> int:
    """Delete COGs that no version references and no active job is writing; return how many."""
    if not raster_dir.exists():
        return 0
    with engine.connect() as conn:
        referenced = {row[0] for row in conn.execute(text("SELECT path FROM raster_versions"))}
        active = {str(row[0]) for row in conn.execute(
            text("SELECT id FROM jobs WHERE status IN ('queued', 'running')"))}
    removed = 0
    for path in raster_dir.glob("*/v*.tif"):
        job_part = path.stem.split("-", 1)[-1]
        if str(path) not in referenced and job_part not in active:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# -- events and institutions ----------------------------------------------------------------
def load_events(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                report: Progress, work_id: str) -> dict[str, Any]:
    """Load dated point events into a named event layer."""
    frame, warnings = readers.events_from_upload(upload, options)
    report(0.5, f"loading {len(frame)} events")
    with engine.begin() as conn:
        layer_id = conn.execute(text(
            "INSERT INTO event_layers (name, kind) VALUES (:name, :kind) "
            "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id"
        ), {"name": options.layer, "kind": options.kind}).scalar_one()
        dataset_id = _record_dataset(conn, "events", options.layer, upload, len(frame), options,
                                     {"warnings": warnings}, work_id)
        fatalities = frame["fatalities"].round().astype("Int64")
        rows = zip(frame["event_date"], frame["event_type"], frame["actor"], fatalities,
                   frame["attributes"].map(_json), _ewkb(frame.geometry), strict=True)
        _copy(conn, "events",
              ["layer_id", "dataset_id", "event_date", "event_type", "actor", "fatalities",
               "attributes", "geom"],
              ([layer_id, dataset_id, *[_clean(v) for v in row]] for row in rows))
    report(1.0, "done")
    return {"dataset_id": dataset_id, "rows": len(frame), "layer": options.layer,
            "warnings": warnings}


def load_institutions(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                      report: Progress, work_id: str) -> dict[str, Any]:
    """Load institution points, typed by the inventory vocabulary."""
    frame, warnings = readers.institutions_from_upload(upload, options)
    report(0.5, f"loading {len(frame)} institutions")
    with engine.begin() as conn:
        dataset_id = _record_dataset(conn, "institutions", upload.original_name, upload,
                                     len(frame), options, {"warnings": warnings}, work_id)
        rows = zip(frame["type"], frame["name"], frame["capacity"], frame["sensitive"],
                   frame["attributes"].map(_json), _ewkb(frame.geometry), strict=True)
        _copy(conn, "institutions",
              ["dataset_id", "type", "name", "capacity", "sensitive", "attributes", "geom"],
              ([dataset_id, *[_clean(v) for v in row]] for row in rows))
    report(1.0, "done")
    by_type = {str(k): int(v) for k, v in frame["type"].value_counts().items()}
    return {"dataset_id": dataset_id, "rows": len(frame), "by_type": by_type,
            "warnings": warnings}


# -- indicators, observations, priorities ---------------------------------------------------
def load_indicators(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                    report: Progress, work_id: str) -> dict[str, Any]:
    """Load indicator metadata (dimension, polarity, cutoff, unit, target), upserted by code."""
    frame = readers.indicators_from_upload(upload)
    columns = ["code", "name", "dimension", "polarity", "cutoff", "unit", "target",
               "design_effect"]
    with engine.begin() as conn:
        dataset_id = _record_dataset(conn, "indicators", upload.original_name, upload,
                                     len(frame), options, {}, work_id)
        conn.execute(text(
            "CREATE TEMP TABLE incoming_indicators (code text, name text, dimension text, "
            "polarity text, cutoff double precision, unit text, target double precision, "
            "design_effect double precision) ON COMMIT DROP"
        ))
        _copy(conn, "incoming_indicators", columns,
              ([_clean(v) for v in row] for row in frame[columns].itertuples(index=False)))
        conn.execute(text(
            "INSERT INTO indicators (code, name, dimension, polarity, cutoff, unit, target, "
            "design_effect, dataset_id) SELECT code, name, dimension, polarity, cutoff, unit, "
            "target, design_effect, :ds "
            "FROM incoming_indicators ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, "
            "dimension = EXCLUDED.dimension, polarity = EXCLUDED.polarity, "
            "cutoff = EXCLUDED.cutoff, unit = EXCLUDED.unit, target = EXCLUDED.target, "
            "design_effect = EXCLUDED.design_effect, dataset_id = EXCLUDED.dataset_id"
        ), {"ds": dataset_id})
    report(1.0, "done")
    return {"dataset_id": dataset_id, "rows": len(frame)}


def load_observations(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                      report: Progress, work_id: str) -> dict[str, Any]:
    """Load long-form observations; a cell loaded again replaces the earlier value."""
    frame = readers.observations_from_upload(upload)
    report(0.4, f"loading {len(frame)} observations")
    with engine.begin() as conn:
        localities = _locality_ids(conn, frame["locality_code"])
        _unknown_codes_error(upload.original_name, frame, "locality_code", set(localities))
        indicators = dict(conn.execute(text("SELECT code, id FROM indicators")).all())
        _unknown_codes_error(upload.original_name, frame, "indicator", set(indicators),
                             "indicator", "load the indicator metadata first")
        dataset_id = _record_dataset(conn, "observations", upload.original_name, upload,
                                     len(frame), options, {}, work_id)
        conn.execute(text(
            "CREATE TEMP TABLE incoming_observations (locality_id int, indicator_id int, "
            "period text, subgroup text, value double precision, sample_size int, source text, "
            "standard_error double precision, ci_low double precision, "
            "ci_high double precision) ON COMMIT DROP"
        ))
        rows = zip(frame["locality_code"].map(localities), frame["indicator"].map(indicators),
                   frame["period"], frame["subgroup"], frame["value"], frame["sample_size"],
                   frame["source"], frame["standard_error"], frame["ci_low"], frame["ci_high"],
                   strict=True)
        _copy(conn, "incoming_observations",
              ["locality_id", "indicator_id", "period", "subgroup", "value", "sample_size",
               "source", "standard_error", "ci_low", "ci_high"],
              ([_clean(v) for v in row] for row in rows))
        conn.execute(text(
            "INSERT INTO observations (locality_id, indicator_id, period, subgroup, value, "
            "sample_size, source, standard_error, ci_low, ci_high, dataset_id) SELECT "
            "locality_id, indicator_id, period, subgroup, value, sample_size, source, "
            "standard_error, ci_low, ci_high, :ds FROM incoming_observations "
            "ON CONFLICT ON CONSTRAINT uq_observations_cell DO UPDATE SET "
            "value = EXCLUDED.value, sample_size = EXCLUDED.sample_size, "
            "standard_error = EXCLUDED.standard_error, ci_low = EXCLUDED.ci_low, "
            "ci_high = EXCLUDED.ci_high, "
            "source = EXCLUDED.source, dataset_id = EXCLUDED.dataset_id"
        ), {"ds": dataset_id})
    report(1.0, "done")
    return {"dataset_id": dataset_id, "rows": len(frame),
            "periods": sorted(frame["period"].unique().tolist())}


def load_priorities(engine: Engine, settings: Settings, upload: UploadedFile, options: Any,
                    report: Progress, work_id: str) -> dict[str, Any]:
    """Load community priority rankings; a forum loaded again replaces its ranking."""
    frame = readers.priorities_from_upload(upload)
    with engine.begin() as conn:
        localities = _locality_ids(conn, frame["locality_code"])
        _unknown_codes_error(upload.original_name, frame, "locality_code", set(localities))
        dataset_id = _record_dataset(conn, "priorities", upload.original_name, upload,
                                     len(frame), options, {}, work_id)
        ids = frame["locality_code"].map(localities)
        for (locality_id, forum_date) in set(zip(ids, frame["forum_date"], strict=True)):
            conn.execute(text(
                "DELETE FROM community_priorities WHERE locality_id = :l AND forum_date = :d"
            ), {"l": int(locality_id), "d": forum_date})
        _copy(conn, "community_priorities",
              ["locality_id", "forum_date", "rank", "need", "dataset_id"],
              ([_clean(v) for v in row] + [dataset_id] for row in
               zip(ids, frame["forum_date"], frame["rank"].astype("Int64"), frame["need"],
                   strict=True)))
    report(1.0, "done")
    return {"dataset_id": dataset_id, "rows": len(frame),
            "localities": int(frame["locality_code"].nunique())}


LOADERS: dict[str, Callable[..., dict[str, Any]]] = {
    "localities": load_localities,
    "population": load_population,
    "hazard": load_hazard,
    "events": load_events,
    "institutions": load_institutions,
    "indicators": load_indicators,
    "observations": load_observations,
    "priorities": load_priorities,
    "households": load_households,
}
