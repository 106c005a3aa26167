"""Exposure tables kept between score runs, so a run after new survey data (or a new
methodology) does not recompute zonal statistics whose inputs did not change.

Exposure is the most expensive step of a run and depends only on the locality polygons, one
hazard raster version, the population raster and the layer's exposure rules. Those inputs
name a table: the SHA-256 of the polygons' codes and WKB, the rasters' paths (a stored raster
version is immutable: a re-upload is a new file), the file sizes and modification times, and
the rules. A table is stored as an uncompressed `.npz` of plain arrays (no pickle), written to
a temporary name and renamed, so a killed run never leaves a half-written table.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.analysis.exposure import HazardLayer, PendingExposure, submit_exposure_layers

# 2: people_covered added; shares over the people where the layer has data
FORMAT_VERSION = 2
# Tables kept; the oldest go first (a few per hazard version and boundary set in use).
KEEP_TABLES = 64


def localities_fingerprint(localities: gpd.GeoDataFrame) -> str:
    """Return a digest of the localities' codes and exact geometries, in order."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, localities.index)).encode())
    for wkb in shapely.to_wkb(localities.geometry.array, hex=False):
        digest.update(wkb)
    return digest.hexdigest()


def _file_identity(path: str | None) -> list[object]:
    if path is None:
        return [None]
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def table_key(fingerprint: str, layer: HazardLayer, population_path: str | None) -> str:
    """Return the name of the exposure table these inputs produce."""
    rules = asdict(layer)
    rules["level_thresholds"] = dict(layer.level_thresholds or {})
    rules.pop("path")
    facts = [FORMAT_VERSION, fingerprint, _file_identity(layer.path),
             _file_identity(population_path), rules]
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


class ExposureStore:
    """A directory of exposure tables named by their inputs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> pd.DataFrame | None:
        """Return the stored table, or None when absent or unreadable."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                texts = set(stored["__text__"].tolist())
                columns = {}
                for name in stored["__columns__"].tolist():
                    values = stored[f"c_{name}"]
                    columns[name] = ([v if v else None for v in values.tolist()]
                                     if name in texts else values)
                return pd.DataFrame(columns, index=pd.Index(stored["__index__"].tolist(),
                                                            name=str(stored["__name__"])))
        except (OSError, KeyError, ValueError):
            return None  # a damaged table is recomputed, never trusted

    def save(self, key: str, table: pd.DataFrame) -> None:
        """Store the table atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        texts = []
        for name in table.columns:
            column = table[name]
            if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
                arrays[f"c_{name}"] = column.to_numpy(dtype=float, na_value=np.nan)
            else:
                texts.append(name)
                arrays[f"c_{name}"] = np.array(
                    ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                     for v in column.tolist()], dtype=str)
        arrays["__columns__"] = np.array([str(c) for c in table.columns], dtype=str)
        arrays["__text__"] = np.array(texts, dtype=str)
        arrays["__index__"] = np.array([str(i) for i in table.index], dtype=str)
        arrays["__name__"] = np.array(str(table.index.name or ""))
        partial = self.directory / f".{key}.{os.getpid()}.partial.npz"
        np.savez(partial, **arrays)
        os.replace(partial, self._path(key))
        stored = sorted(self.directory.glob("*.npz"), key=lambda f: f.stat().st_mtime_ns)
        for old in stored[:-KEEP_TABLES]:
            old.unlink(missing_ok=True)


class StoredExposure:
    """Exposure tables of several layers: stored ones at once, missing ones being computed."""

    def __init__(self, tables: list[pd.DataFrame | None], keys: list[str],
                 pending: PendingExposure | None, store: ExposureStore | None) -> None:
        self._tables, self._keys, self._pending, self._store = tables, keys, pending, store

    @property
    def reused(self) -> int:
        """Return how many layers' tables came from the store."""
        return sum(table is not None for table in self._tables)

    def result(self) -> list[pd.DataFrame]:
        """Return one table per layer, in order, storing the ones just computed."""
        tables = list(self._tables)
        if self._pending is not None:
            fresh = iter(self._pending.result())
            for i, table in enumerate(tables):
                if table is None:
                    tables[i] = computed = next(fresh)
                    if self._store is not None:
                        self._store.save(self._keys[i], computed)
        return [t for t in tables if t is not None]

    def cancel(self) -> None:
        """Stop the computation of missing tables."""
        if self._pending is not None:
            self._pending.cancel()


def start_exposure(
    localities: gpd.GeoDataFrame,
    layers: Sequence[HazardLayer],
    *,
    population_path: str | None,
    store: ExposureStore | None,
    executor: cf.Executor | None = None,
) -> StoredExposure:
    """Return the layers' exposure: stored tables reused, the rest started (see
    submit_exposure_layers) and stored when `result()` collects them."""
    if store is None:
        keys: list[str] = [""] * len(layers)
        tables: list[pd.DataFrame | None] = [None] * len(layers)
    else:
        fingerprint = localities_fingerprint(localities)
        keys = [table_key(fingerprint, layer, population_path) for layer in layers]
        tables = [store.load(key) for key in keys]
    missing = [layer for layer, table in zip(layers, tables, strict=True) if table is None]
    pending = (submit_exposure_layers(localities, missing, population_path=population_path,
                                      executor=executor) if missing else None)
    return StoredExposure(tables, keys, pending, store)


def exposure_tables(
    localities: gpd.GeoDataFrame,
    layers: Sequence[HazardLayer],
    *,
    population_path: str | None,
    store: ExposureStore | None,
    executor: cf.Executor | None = None,
) -> tuple[list[pd.DataFrame], int]:
    """Return run_exposure_layers' tables, reusing stored ones; also how many were reused."""
    started = start_exposure(localities, layers, population_path=population_path, store=store,
                             executor=executor)
    return started.result(), started.reused
