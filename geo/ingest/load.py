"""Load a validated upload into PostGIS: one transaction, all or nothing, rows and files alike.

`ingest()` is the one code path behind `riskatlas ingest` and `POST /api/v1/uploads/{kind}`;
with `dry_run=True` (`riskatlas check`, `?dry_run=true`) it does everything in a transaction
that is rolled back and writes no raster, so the answer is what *would* be loaded.
Rows go in with COPY into a temporary table and one INSERT ... SELECT, inside a single
transaction that also records the dataset; a raster's COG is written in the job's staging
directory and renamed into place inside that transaction, and removed again if it fails.

What a new upload does to what is stored, per kind (docs/own-country.md says it for users):
- localities are *upserted* field by field: a code already stored takes the file's
  geometry, and its name, parent, population and other-language names only where the file
  gives them (a missing column or a blank cell never erases a stored value);
- population tables update the population of the codes they give, nothing else;
- named layers are *replaced* whole by an upload under the same name, in one transaction,
  so the old version serves until the new one has succeeded: hazard and population rasters
  (a new version of the layer), events and institutions (`layer_name`, by default the
  file's name without extension);
- indicators are upserted by code, observations by cell, priorities by forum.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text

from geo.errors import ValidationError
from geo.ingest import _columns as cols
from geo.ingest import coverage, rasters, readers
from geo.ingest._problems import fail, problem
from geo.ingest._vocabulary import INSTITUTION_FAMILIES, type_summary
from geo.ingest.files import UploadedFile, open_upload
from geo.ingest.households import load_households
from geo.ingest.options import parse_options
from geo.ingest.tile_geometry import refresh_tile_geometry
from geo.settings import Settings

Progress = Callable[[float, str], None]
SUBGROUP_SHARE_INDICATOR = "population_share"


@dataclass
class Load:
    """One load in progress: where it writes, what it reads, and whether it is a dry run."""

    engine: Engine
    settings: Settings
    upload: UploadedFile
    options: Any
    report: Progress
    work_id: str
    dry_run: bool = False

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield a connection in a transaction: committed, or rolled back for a dry run."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                yield conn
            except BaseException:
                transaction.rollback()
                raise
            if self.dry_run:
                transaction.rollback()
            else:
                transaction.commit()


def ingest(
    engine: Engine,
    settings: Settings,
    kind: str,
    path: Path,
    original_name: str,
    raw_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    job_id: uuid.UUID | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Validate and load one file of `kind`; return a summary (dataset id, rows, warnings)."""
    options = parse_options(kind, raw_options or {}, original_name)
    report = progress or (lambda fraction, message: None)
    work_id = str(job_id) if job_id else uuid.uuid4().hex
    workdir = settings.storage.staging_dir / work_id / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report(0.01, "checking the file")
        with open_upload(path, original_name, max_bytes=settings.storage.max_upload_bytes,
                         workdir=workdir) as upload:
            loader = LOADERS[kind]
            summary = loader(Load(engine, settings, upload, options, report, work_id, dry_run))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if job_id is None:
            # No job owns this staging directory: remove it, not only its work/ folder.
            shutil.rmtree(settings.storage.staging_dir / work_id, ignore_errors=True)
    if dry_run:
        summary = {k: v for k, v in summary.items() if k != "dataset_id"}
    return summary


def check_upload(
    engine: Engine, settings: Settings, kind: str, path: Path, original_name: str,
    raw_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return what loading the file would do (or every problem refusing it), writing nothing."""
    try:
        summary = ingest(engine, settings, kind, path, original_name, raw_options, dry_run=True)
    except ValidationError as exc:
        details = exc.details if isinstance(exc.details, list) else [exc.details or {}]
        return {"dry_run": True, "ok": False, "kind": kind, "file": original_name,
                "message": exc.message, "problems": details}
    return {"dry_run": True, "ok": True, "kind": kind, "file": original_name,
            "problems": [], "would_load": summary}


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


def _known_only(ctx: Load, frame: pd.DataFrame, column: str, known: Iterable[str],
                what: str = "locality code", hint: str = "load it first"
                ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Return the rows whose code is known, and the skipped ones (with `skip_unknown`).

    All or nothing by default: any unknown code refuses the file, naming every row. With
    the `skip_unknown` option the known rows load and each skipped row is listed.
    """
    known_set = set(known)
    unknown = ~frame[column].isin(known_set)
    if not unknown.any():
        return frame, []
    if not getattr(ctx.options, "skip_unknown", False) or unknown.all():
        _unknown_codes_error(ctx.upload.original_name, frame, column, known_set, what,
                             hint + ("; or pass --skip-unknown to load the rest"
                                     if not unknown.all() else ""))
    field = frame.attrs.get("source_fields", {}).get(column, column)
    location = cols.location_label(frame)
    skipped = [{location: _plain_label(label), "field": field, "code": value,
                "problem": f"unknown {what}"}
               for label, value in frame.loc[unknown, column].items()]
    kept = frame[~unknown]
    kept.attrs.update(frame.attrs)
    return kept, skipped


def _plain_label(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _skipped_note(skipped: list[dict[str, Any]], what: str = "rows") -> str:
    codes = ", ".join(str(s["code"]) for s in skipped[:10]) + (" …" if len(skipped) > 10 else "")
    return f"{len(skipped)} {what} with unknown codes were skipped ({codes}); see 'skipped'"


# -- localities ---------------------------------------------------------------------------
LOCALITY_COLUMNS = ("code", "name", "level", "parent_code", "population", "population_year",
                    "names", "derived", "geom")


def load_localities(ctx: Load) -> dict[str, Any]:
    """Load admin units: upsert by code field by field, missing ancestors dissolved."""
    read = readers.localities_from_upload(ctx.upload, ctx.options)
    frame, ancestors, warnings = read.frame, read.extra["ancestors"], read.notes
    ctx.report(0.5, f"loading {len(frame)} localities")
    with ctx.transaction() as conn:
        stored = dict(conn.execute(
            text("SELECT code, derived FROM localities WHERE code = ANY(:codes)"),
            {"codes": [*frame["code"], *ancestors["code"]]}).all())
        new_ancestors = ancestors[~ancestors["code"].isin(set(stored) | set(frame["code"]))]
        inferred = _infer_parents_by_prefix(conn, frame, new_ancestors)
        if inferred:
            warnings.append(f"parent codes of {inferred} localities taken from their P-code prefix")
        _check_parents(ctx, conn, frame, set(frame["code"]) | set(new_ancestors["code"]))
        incoming = pd.concat([new_ancestors.assign(derived=True),
                              frame.assign(derived=False)], ignore_index=True)
        _stage_localities(conn, incoming)
        dataset_id = _record_dataset(conn, "localities", ctx.upload.original_name, ctx.upload,
                                     len(frame), ctx.options, {"warnings": warnings},
                                     ctx.work_id)
        _upsert_localities(conn, dataset_id)
        ctx.report(0.8, "simplifying outlines for the map tiles")
        loaded = conn.execute(text(
            "SELECT l.id FROM localities l JOIN incoming_localities i ON i.code = l.code"
        )).scalars().all()
        if not ctx.dry_run:
            refresh_tile_geometry(conn, loaded)
    ctx.report(1.0, "done")
    created = _created_note(new_ancestors, ancestors)
    replaced = sorted(code for code in frame["code"] if stored.get(code) is True)
    if created:
        warnings.append(created)
    if replaced:
        warnings.append(f"{len(replaced)} units that had been made from a finer level's parent "
                        "columns now have this file's boundaries")
    levels = {str(k): int(v) for k, v in frame["level"].value_counts().sort_index().items()}
    updated = sum(1 for code in frame["code"] if code in stored)
    return {"dataset_id": dataset_id, "rows": len(frame), "levels": levels,
            "new": len(frame) - updated, "updated": updated,
            "created_ancestors": {str(k): int(v) for k, v in
                                  new_ancestors["level"].value_counts().sort_index().items()},
            "replaced_derived": len(replaced), "warnings": warnings, "columns": read.columns}


def _created_note(new_ancestors: gpd.GeoDataFrame, ancestors: gpd.GeoDataFrame) -> str | None:
    """Return "created 3 level-1 units from the parent columns (ADM1_PCODE)", or None."""
    if new_ancestors.empty:
        return None
    columns = ancestors.attrs.get("source_columns", {})
    parts = [f"{int(n)} level-{int(level)} unit{'s' if n != 1 else ''}"
             for level, n in new_ancestors["level"].value_counts().sort_index().items()]
    used = ", ".join(columns[int(level)] for level in sorted(new_ancestors["level"].unique())
                     if int(level) in columns)
    return (f"created {', '.join(parts)} from the parent columns ({used}); loading the real "
            "boundary file of that level later replaces them")


def _check_parents(ctx: Load, conn: Connection, frame: gpd.GeoDataFrame,
                   coming: set[str]) -> None:
    """Raise naming rows whose parent code is neither stored, in the file, nor derivable."""
    parents = frame["parent_code"].dropna()
    if parents.empty:
        return
    known = set(_locality_ids(conn, parents)) | coming
    missing = parents[~parents.isin(known)]
    if not missing.empty:
        _unknown_codes_error(ctx.upload.original_name, frame.loc[missing.index], "parent_code",
                             known, "parent code", "load that level's boundaries first")


def _stage_localities(conn: Connection, incoming: pd.DataFrame) -> None:
    conn.execute(text(
        "CREATE TEMP TABLE incoming_localities (code text, name text, level smallint, "
        "parent_code text, population double precision, population_year smallint, "
        "names jsonb, derived boolean, geom geometry) ON COMMIT DROP"
    ))
    years = incoming["population_year"] if "population_year" in incoming else [None] * len(
        incoming)
    levels = [int(level) for level in incoming["level"]]
    rows = zip(incoming["code"], incoming["name"], levels, incoming["parent_code"],
               incoming["population"], years, incoming["names"].map(_json),
               incoming["derived"], _ewkb(gpd.GeoSeries(incoming.geometry)), strict=True)
    _copy(conn, "incoming_localities", LOCALITY_COLUMNS,
          ([_clean(v) for v in row] for row in rows))


def _upsert_localities(conn: Connection, dataset_id: int) -> None:
    """Update stored codes field by field (never erasing), then insert the new ones."""
    # Derived ancestors only ever insert: a stored unit, real or derived, is left alone.
    conn.execute(text(
        "UPDATE localities l SET name = COALESCE(i.name, l.name), level = i.level, "
        "parent_code = COALESCE(i.parent_code, l.parent_code), "
        "population = COALESCE(i.population, l.population), "
        "population_year = COALESCE(i.population_year, l.population_year), "
        "names = COALESCE(l.names, '{}'::jsonb) || COALESCE(i.names, '{}'::jsonb), "
        "derived = false, dataset_id = :ds, area_km2 = ST_Area(i.geom::geography) / 1e6, "
        "geom = ST_Multi(i.geom) FROM incoming_localities i "
        "WHERE l.code = i.code AND NOT i.derived"
    ), {"ds": dataset_id})
    conn.execute(text(
        "INSERT INTO localities (code, name, level, parent_code, population, "
        "population_year, names, derived, dataset_id, area_km2, geom) "
        "SELECT i.code, COALESCE(i.name, i.code), i.level, i.parent_code, i.population, "
        "i.population_year, COALESCE(i.names, '{}'::jsonb), i.derived, :ds, "
        "ST_Area(i.geom::geography) / 1e6, ST_Multi(i.geom) FROM incoming_localities i "
        "WHERE NOT EXISTS (SELECT 1 FROM localities l WHERE l.code = i.code) ORDER BY i.level"
    ), {"ds": dataset_id})


def _infer_parents_by_prefix(conn: Connection, frame: gpd.GeoDataFrame,
                             ancestors: pd.DataFrame | None = None) -> int:
    """Fill missing parents with the one-level-up code that prefixes the code (P-code rule)."""
    orphans = frame["parent_code"].isna() & (frame["level"] > 0)
    if not orphans.any():
        return 0
    rows = conn.execute(text("SELECT code, level FROM localities")).all()
    coming = [frame] if ancestors is None else [frame, ancestors]
    by_level: dict[int, set[str]] = {}
    pairs = [pair for part in coming for pair in zip(part["code"], part["level"], strict=True)]
    for code, level in [*rows, *pairs]:
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
def load_population(ctx: Load) -> dict[str, Any]:
    """Load a population table onto localities, or a population raster as a layer version."""
    if ctx.upload.is_raster:
        return _load_raster(ctx, role="population")
    read = readers.population_from_upload(ctx.upload, ctx.options)
    frame, warnings = read.frame, read.notes
    with ctx.transaction() as conn:
        known = _locality_ids(conn, frame["code"])
        frame, skipped = _known_only(ctx, frame, "code", known)
        if skipped:
            warnings.append(_skipped_note(skipped))
        conn.execute(text(
            "CREATE TEMP TABLE incoming_population (code text, population double precision, "
            "year smallint) ON COMMIT DROP"
        ))
        _copy(conn, "incoming_population", ["code", "population", "year"],
              ([_clean(v) for v in row] for row in
               zip(frame["code"], frame["population"], frame["year"], strict=True)))
        dataset_id = _record_dataset(conn, "population", ctx.options.name, ctx.upload,
                                     len(frame), ctx.options,
                                     {"warnings": warnings, "skipped": skipped}, ctx.work_id)
        conn.execute(text(
            "UPDATE localities l SET population = p.population, "
            "population_year = COALESCE(p.year, l.population_year) "
            "FROM incoming_population p WHERE l.code = p.code"
        ))
        shares = read.extra["shares"]
        shares = shares[shares["code"].isin(known)] if not shares.empty else shares
        share_rows = _load_subgroup_shares(conn, shares, frame, known, dataset_id)
        levels = dict(conn.execute(text(
            "SELECT code, level FROM localities WHERE code = ANY(:c)"),
            {"c": list(frame["code"])}).all())
    ctx.report(1.0, "done")
    by_level = frame.assign(level=frame["code"].map(levels)).groupby("level")["population"]
    result = {"dataset_id": dataset_id, "rows": len(frame),
              "population_by_level": {str(k): float(v) for k, v in by_level.sum().items()},
              "warnings": warnings, "columns": read.columns}
    if share_rows:
        result["subgroup_shares"] = share_rows
    if skipped:
        result["skipped"] = skipped
    return result


def _load_subgroup_shares(conn: Connection, shares: pd.DataFrame, frame: pd.DataFrame,
                          known: dict[str, int], dataset_id: int) -> int:
    """Store COD-PS subgroup shares as `population_share` observations; return how many."""
    if shares.empty:
        return 0
    indicator_id = conn.execute(text(
        "INSERT INTO indicators (code, name, dimension, polarity, unit, dataset_id) "
        "VALUES (:code, 'Share of the population in a subgroup (from the population table)', "
        "'community', 'higher_is_worse', 'share', :ds) "
        "ON CONFLICT (code) DO UPDATE SET code = EXCLUDED.code RETURNING id"
    ), {"code": SUBGROUP_SHARE_INDICATOR, "ds": dataset_id}).scalar_one()
    years = dict(zip(frame["code"], frame["year"], strict=True))
    conn.execute(text(
        "CREATE TEMP TABLE incoming_shares (locality_id int, period text, subgroup text, "
        "value double precision) ON COMMIT DROP"))
    _copy(conn, "incoming_shares", ["locality_id", "period", "subgroup", "value"],
          ([known[code], _period(years.get(code)), subgroup, float(share)]
           for code, subgroup, share in zip(shares["code"], shares["subgroup"], shares["share"],
                                            strict=True)))
    conn.execute(text(
        "INSERT INTO observations (locality_id, indicator_id, period, subgroup, value, source, "
        "dataset_id) SELECT locality_id, :ind, period, subgroup, value, 'population table', :ds "
        "FROM incoming_shares ON CONFLICT ON CONSTRAINT uq_observations_cell DO UPDATE SET "
        "value = EXCLUDED.value, source = EXCLUDED.source, dataset_id = EXCLUDED.dataset_id"
    ), {"ind": indicator_id, "ds": dataset_id})
    return len(shares)


def _period(year: Any) -> str:
    """Return the observation period of a population share: its year, or 'undated'."""
    return "undated" if year is None or pd.isna(year) else str(int(year))


# -- rasters ------------------------------------------------------------------------------
def load_hazard(ctx: Load) -> dict[str, Any]:
    """Load a hazard raster as a new version of the named layer."""
    if not ctx.upload.is_raster:
        raise ValidationError(
            f"{ctx.upload.original_name}: a hazard layer must be a raster (GeoTIFF or a zipped "
            "ESRI ASCII grid with its .prj)",
            [{"file": ctx.upload.original_name, "problem": "not a raster"}],
        )
    return _load_raster(ctx, role="hazard")


def _load_raster(ctx: Load, role: str) -> dict[str, Any]:
    upload, options, settings, report = ctx.upload, ctx.options, ctx.settings, ctx.report
    info = rasters.inspect_raster(upload, max_cells=settings.storage.max_raster_cells)
    if ctx.dry_run:
        return _raster_dry_run(ctx, role, info)
    staged = upload.directory / "cog.tif"
    density = role == "population" and options.value_kind == "density"
    stats = rasters.write_cog(upload, staged, density_to_count=density,
                              progress=lambda f: report(0.05 + 0.85 * f, "writing the COG"))
    report(0.92, "recording the layer")
    final: Path | None = None
    warnings: list[str] = []
    try:
        with ctx.transaction() as conn:
            layer_id = _upsert_layer(conn, role, options)
            version = int(conn.execute(
                text("SELECT COALESCE(MAX(version), 0) + 1 FROM raster_versions "
                     "WHERE layer_id = :id"), {"id": layer_id}).scalar_one())
            covered = coverage.raster_coverage(conn, info.bounds_4326, role)
            if covered.warning:
                warnings.append(covered.warning)
            final = settings.storage.raster_dir / str(layer_id) / f"v{version}-{ctx.work_id}.tif"
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staged, final)
            dataset_id = _record_dataset(
                conn, role, options.name, upload, 1, options,
                {"statistics": _stats_dict(stats), "warnings": warnings,
                 "coverage": covered.as_dict()}, ctx.work_id)
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
            "version": version, "statistics": _stats_dict(stats),
            "coverage": covered.as_dict(), "warnings": warnings}


def _raster_dry_run(ctx: Load, role: str, info: rasters.RasterInfo) -> dict[str, Any]:
    """Return what loading the raster would do: its header facts, version and coverage."""
    with ctx.transaction() as conn:
        row = conn.execute(text(
            "SELECT l.role, COALESCE(MAX(v.version), 0) FROM raster_layers l "
            "LEFT JOIN raster_versions v ON v.layer_id = l.id WHERE l.name = :name "
            "GROUP BY l.role"), {"name": ctx.options.name}).first()
        covered = coverage.raster_coverage(conn, info.bounds_4326, role)
    if row is not None and row[0] != role:
        raise ValidationError(
            f"a {row[0]} layer is already called {ctx.options.name!r}; choose another name",
            [{"field": "name", "problem": f"name taken by a {row[0]} layer"}])
    return {"layer": ctx.options.name, "version": (row[1] if row else 0) + 1,
            "crs": info.crs, "width": info.width, "height": info.height,
            "bounds_4326": list(info.bounds_4326), "nodata": info.nodata, "dtype": info.dtype,
            "coverage": covered.as_dict(),
            "warnings": [covered.warning] if covered.warning else []}


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


# -- events and institutions (named layers, replaced whole) ---------------------------------
def _claim_layer(conn: Connection, table: str, name: str, extra: dict[str, Any] | None = None
                 ) -> tuple[int, int]:
    """Return (id, version) of the named layer in `table`, created if new, locked for update."""
    assert table in ("event_layers", "institution_layers")
    columns = ", ".join(["name", *(extra or {})])
    values = ", ".join([":name", *(f":{k}" for k in extra or {})])
    updates = ", ".join(["name = EXCLUDED.name", *(f"{k} = EXCLUDED.{k}" for k in extra or {})])
    row = conn.execute(text(
        f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (name) DO UPDATE SET "
        f"{updates} RETURNING id, version"), {"name": name, **(extra or {})}).one()
    return int(row[0]), int(row[1])


def load_events(ctx: Load) -> dict[str, Any]:
    """Load dated point events as the named event layer, replacing its earlier version."""
    read = readers.events_from_upload(ctx.upload, ctx.options)
    frame, warnings, name = read.frame, read.notes, ctx.options.layer_name
    ctx.report(0.5, f"loading {len(frame)} events")
    with ctx.transaction() as conn:
        layer_id, version = _claim_layer(conn, "event_layers", name, {"kind": ctx.options.kind})
        replaced = conn.execute(text("DELETE FROM events WHERE layer_id = :id"),
                                {"id": layer_id}).rowcount
        dataset_id = _record_dataset(conn, "events", name, ctx.upload, len(frame), ctx.options,
                                     {"warnings": warnings}, ctx.work_id)
        fatalities = frame["fatalities"].round().astype("Int64")
        rows = zip(frame["event_date"], frame["event_type"], frame["actor"], fatalities,
                   frame["attributes"].map(_json), _ewkb(frame.geometry), strict=True)
        _copy(conn, "events",
              ["layer_id", "dataset_id", "event_date", "event_type", "actor", "fatalities",
               "attributes", "geom"],
              ([layer_id, dataset_id, *[_clean(v) for v in row]] for row in rows))
        conn.execute(text("UPDATE event_layers SET version = version + 1, dataset_id = :ds "
                          "WHERE id = :id"), {"ds": dataset_id, "id": layer_id})
    ctx.report(1.0, "done")
    if replaced:
        warnings.append(f"replaced version {version} of the event layer {name!r} "
                        f"({replaced} events)")
    return {"dataset_id": dataset_id, "rows": len(frame), "layer": name,
            "version": version + 1, "replaced": replaced, "warnings": warnings,
            "columns": read.columns}


def load_institutions(ctx: Load) -> dict[str, Any]:
    """Load institution points as the named inventory, replacing its earlier version."""
    read = readers.institutions_from_upload(ctx.upload, ctx.options)
    frame, warnings, name = read.frame, read.notes, ctx.options.layer_name
    ctx.report(0.5, f"loading {len(frame)} institutions")
    with ctx.transaction() as conn:
        layer_id, version = _claim_layer(conn, "institution_layers", name)
        replaced = conn.execute(text("DELETE FROM institutions WHERE layer_id = :id"),
                                {"id": layer_id}).rowcount
        dataset_id = _record_dataset(conn, "institutions", name, ctx.upload, len(frame),
                                     ctx.options, {"warnings": warnings}, ctx.work_id)
        rows = zip(frame["type"], frame["name"], frame["capacity"], frame["sensitive"],
                   frame["attributes"].map(_json), _ewkb(frame.geometry), strict=True)
        _copy(conn, "institutions",
              ["layer_id", "dataset_id", "type", "name", "capacity", "sensitive", "attributes",
               "geom"],
              ([layer_id, dataset_id, *[_clean(v) for v in row]] for row in rows))
        conn.execute(text("UPDATE institution_layers SET version = version + 1, "
                          "dataset_id = :ds WHERE id = :id"), {"ds": dataset_id, "id": layer_id})
        covered = coverage.facility_coverage(conn, layer_id)
        if covered.warning:
            warnings.append(covered.warning)
        conn.execute(text(
            "UPDATE datasets SET report = CAST(:report AS jsonb) WHERE id = :id"),
            {"report": _json({"warnings": warnings, "coverage": covered.as_dict()}),
             "id": dataset_id})
    ctx.report(1.0, "done")
    if replaced:
        warnings.append(f"replaced version {version} of the inventory {name!r} "
                        f"({replaced} institutions)")
    by_type = {str(k): int(v) for k, v in frame["type"].value_counts().items()}
    families = type_summary(by_type)
    if families["not_counted_by_access"]:
        listed = ", ".join(f"{k} ×{n}" for k, n in families["not_counted_by_access"].items())
        warnings.append(f"kept in the inventory but counted by no access measure "
                        f"(families: {', '.join(INSTITUTION_FAMILIES)}): {listed}")
    return {"dataset_id": dataset_id, "rows": len(frame), "layer": name,
            "version": version + 1, "replaced": replaced, "by_type": by_type, **families,
            "coverage": covered.as_dict(), "warnings": warnings, "columns": read.columns}


# -- indicators, observations, priorities ---------------------------------------------------
def load_indicators(ctx: Load) -> dict[str, Any]:
    """Load indicator metadata (dimension, polarity, cutoff, unit, target), upserted by code."""
    read = readers.indicators_from_upload(ctx.upload, ctx.options)
    frame = read.frame
    columns = ["code", "name", "dimension", "polarity", "cutoff", "unit", "target",
               "design_effect"]
    with ctx.transaction() as conn:
        dataset_id = _record_dataset(conn, "indicators", ctx.upload.original_name, ctx.upload,
                                     len(frame), ctx.options, {}, ctx.work_id)
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
    ctx.report(1.0, "done")
    return {"dataset_id": dataset_id, "rows": len(frame), "warnings": read.notes,
            "columns": read.columns}


def load_observations(ctx: Load) -> dict[str, Any]:
    """Load long-form observations; a cell loaded again replaces the earlier value."""
    read = readers.observations_from_upload(ctx.upload, ctx.options)
    frame, warnings = read.frame, read.notes
    ctx.report(0.4, f"loading {len(frame)} observations")
    with ctx.transaction() as conn:
        localities = _locality_ids(conn, frame["locality_code"])
        frame, skipped = _known_only(ctx, frame, "locality_code", localities)
        indicators = dict(conn.execute(text("SELECT code, id FROM indicators")).all())
        frame, skipped_indicators = _known_only(ctx, frame, "indicator", indicators,
                                                "indicator", "load the indicator metadata first")
        skipped += skipped_indicators
        if skipped:
            warnings.append(_skipped_note(skipped))
        dataset_id = _record_dataset(conn, "observations", ctx.upload.original_name, ctx.upload,
                                     len(frame), ctx.options, {"skipped": skipped}, ctx.work_id)
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
    ctx.report(1.0, "done")
    result = {"dataset_id": dataset_id, "rows": len(frame),
              "periods": sorted(frame["period"].unique().tolist()), "warnings": warnings,
              "columns": read.columns}
    if skipped:
        result["skipped"] = skipped
    return result


def load_priorities(ctx: Load) -> dict[str, Any]:
    """Load community priority rankings; a forum loaded again replaces its ranking."""
    read = readers.priorities_from_upload(ctx.upload, ctx.options)
    frame, warnings = read.frame, read.notes
    with ctx.transaction() as conn:
        localities = _locality_ids(conn, frame["locality_code"])
        frame, skipped = _known_only(ctx, frame, "locality_code", localities)
        if skipped:
            warnings.append(_skipped_note(skipped))
        dataset_id = _record_dataset(conn, "priorities", ctx.upload.original_name, ctx.upload,
                                     len(frame), ctx.options, {"skipped": skipped}, ctx.work_id)
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
    ctx.report(1.0, "done")
    result = {"dataset_id": dataset_id, "rows": len(frame),
              "localities": int(frame["locality_code"].nunique()), "warnings": warnings,
              "columns": read.columns}
    if skipped:
        result["skipped"] = skipped
    return result


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
