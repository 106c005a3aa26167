"""The bad-input table through the API and the CLI, and a process killed mid-ingest.

Every bad upload must be refused with one clear message naming the file, the row or
feature, the field and the problem (4xx from the API, exit status 1 and no traceback from
the CLI), and must leave nothing behind: no new rows in any table an ingest writes to and
no new file under the data directory's rasters/ or staging/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import pytest
import rasterio
from ingest_helpers import write_zip
from rasterio.transform import from_origin
from shapely.geometry import box
from sqlalchemy import text
from stack_helpers import (
    REPO,
    Region,
    Stack,
    assert_nothing_left,
    big_raster,
    cli_command,
    cli_env,
    hazard_raster,
    quiet_write_tif,
    run_cli,
    snapshot,
    square,
    upload,
    wait_for_job,
    write_geojson,
    write_text,
)

from geo.ingest.load import remove_orphan_rasters
from geo.jobs import create_job, recover_interrupted_jobs
from tests.conftest import LiveServer

BASE = Region("BR")  # loaded once by the `base_region` fixture: BR1, BR101, BR102, br_water


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client carrying the uploader key."""
    with stack.client() as http_client:
        yield http_client


# --- the bad files -----------------------------------------------------------------------


def not_geo(tmp: Path) -> Path:
    return write_text(tmp / "notes.txt", "just some words without any structure\n")


def corrupt_tiff(tmp: Path) -> Path:
    path = tmp / "flood.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    return path


def raster_no_crs(tmp: Path) -> Path:
    return quiet_write_tif(tmp / "nocrs.tif", crs=None)


def raster_no_transform(tmp: Path) -> Path:
    return quiet_write_tif(tmp / "plain.tif", transform=None)


def bare_ascii_grid(tmp: Path) -> Path:
    return write_text(tmp / "depth.asc", "ncols 2\nnrows 2\nxllcorner 1\nyllcorner 1\n"
                                         "cellsize 1\n1 2\n3 4\n")


def shapefile_without_prj(tmp: Path) -> Path:
    frame = gpd.GeoDataFrame({"ADM1_PCODE": ["NP1"]}, geometry=[box(30, -2, 31, -1)])
    frame.to_file(tmp / "units.shp")
    members: dict[str, bytes | Path] = {f"units.{e}": tmp / f"units.{e}"
                                        for e in ("shp", "shx", "dbf")}
    return write_zip(tmp / "noprj.zip", members)


def points_as_localities(tmp: Path) -> Path:
    return write_geojson(tmp / "points.geojson", [
        ({"ADM1_PCODE": "PT1"}, {"type": "Point", "coordinates": [30, -2]})])


def polygons_as_events(tmp: Path) -> Path:
    return write_geojson(tmp / "areas.geojson", [
        ({"event_date": "2024-01-01"}, square(30, -2))])


def empty_file(tmp: Path) -> Path:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return path


def header_only(tmp: Path) -> Path:
    return write_text(tmp / "header.csv", "name,latitude,longitude\n")


def duplicate_codes(tmp: Path) -> Path:
    return write_geojson(tmp / "dup.geojson", [
        ({"ADM1_PCODE": "DU1", "ADM1_EN": "One"}, square(30, -2)),
        ({"ADM1_PCODE": "DU1", "ADM1_EN": "Two"}, square(31, -2)),
    ])


def unknown_parent(tmp: Path) -> Path:
    # A COD parent column (ADM1_PCODE) builds the missing parent; a plain parent column
    # names a unit nothing describes, so an unknown code there is still refused.
    return write_geojson(tmp / "orphan.geojson", [
        ({"ADM2_PCODE": "OR101", "ADM2_EN": "Orphan", "parent_code": "ZZ9"}, square(30, -2))])


def non_numeric(tmp: Path) -> Path:
    return write_text(tmp / "pop.csv", "code,population\nBR101,12\nBR102,abc\n")


def bad_date(tmp: Path) -> Path:
    return write_text(tmp / "dates.csv", "event_date,latitude,longitude\n"
                                         "2023-01-05,-2,30\n31/31/2023,-2,30\n")


def out_of_range(tmp: Path) -> Path:
    return write_text(tmp / "range.csv", "name,latitude,longitude\nclinic,45,200\n")


def swapped(tmp: Path) -> Path:
    return write_text(tmp / "swapped.csv", "name,latitude,longitude\nclinic,106.8,-6.2\n")


def zip_without_shp(tmp: Path) -> Path:
    return write_zip(tmp / "parts.zip", {"units.dbf": b"x", "units.shx": b"y", "a.txt": b"z"})


def zip_traversal(tmp: Path) -> Path:
    return write_zip(tmp / "evil.zip", {"../x.shp": b"x", "x.shx": b"y", "x.dbf": b"z"})


def zip_bomb(tmp: Path) -> Path:
    return write_zip(tmp / "bomb.zip", {"units.shp": b"\0" * (20 * 1024 * 1024),
                                        "units.shx": b"x", "units.dbf": b"x"})


def huge_header(tmp: Path) -> Path:
    path = tmp / "huge.tif"
    # Sparse and tiled: the header claims 10^12 cells, the file is a few KB.
    with rasterio.open(
        path, "w", driver="GTiff", width=1_000_000, height=1_000_000, count=1, dtype="uint8",
        crs="EPSG:4326", transform=from_origin(0, 0, 1e-4, 1e-4), tiled=True,
        blockxsize=16384, blockysize=16384, sparse_ok=True, compress="deflate",
    ):
        pass
    return path


def vrt_as_tif(tmp: Path) -> Path:
    return write_text(tmp / "flood.tif", (
        '<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand dataType="Byte" band="1">'
        "<SimpleSource><SourceFilename>/etc/passwd</SourceFilename></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"))


def unknown_locality(tmp: Path) -> Path:
    return write_text(tmp / "obs.csv", "locality_code,indicator,period,value\n"
                                       "NOPE1,br_water,2023,50\n")


def unknown_indicator(tmp: Path) -> Path:
    return write_text(tmp / "obs.csv", "locality_code,indicator,period,value\n"
                                       "BR101,no_such_indicator,2023,50\n")


def good_hazard(tmp: Path) -> Path:
    return hazard_raster(tmp, "fine.tif")


def good_localities(tmp: Path) -> Path:
    return write_geojson(tmp / "fine.geojson", [({"ADM1_PCODE": "FI1"}, square(30, -2))])


@dataclass(frozen=True)
class Bad:
    """One row of the bad-input table."""

    id: str
    kind: str
    build: Callable[[Path], Path]
    parts: tuple[str, ...]
    status: int = 422
    options: dict[str, str] = field(default_factory=dict)
    # Expected entries of the first error detail (besides `file` and `problem`).
    detail: dict[str, Any] = field(default_factory=dict)
    # Option errors are found before any file is read, so they name the option, not a file.
    names_file: bool = True


HAZARD = {"name": "bad-layer"}
BAD_INPUTS = [
    Bad("not a geo file", "hazard", not_geo, ("not a geo file",), options=HAZARD),
    Bad("corrupt GeoTIFF", "hazard", corrupt_tiff, ("corrupt",), options=HAZARD),
    Bad("raster without CRS", "hazard", raster_no_crs, ("no coordinate reference system",),
        options=HAZARD),
    Bad("raster without geotransform", "hazard", raster_no_transform, ("no geotransform",),
        options=HAZARD),
    Bad("ASCII grid without .prj", "hazard", bare_ascii_grid, ("no coordinate", ".prj"),
        options=HAZARD),
    Bad("vector without CRS", "localities", shapefile_without_prj,
        ("no coordinate reference system", ".prj")),
    Bad("points as localities", "localities", points_as_localities,
        ("feature 1", "'geometry'", "wrong geometry type", "Point"),
        detail={"feature": 1, "field": "geometry"}),
    Bad("polygons as events", "events", polygons_as_events,
        ("feature 1", "wrong geometry type", "points"), detail={"feature": 1}),
    Bad("raster as localities", "localities", good_hazard, ("must be a vector file",)),
    Bad("vector as hazard", "hazard", good_localities, ("must be a raster",), options=HAZARD),
    Bad("empty file", "events", empty_file, ("empty",)),
    Bad("header only", "institutions", header_only, ("no data rows",)),
    Bad("duplicate locality codes", "localities", duplicate_codes,
        ("feature 2", "'ADM1_PCODE'", "duplicate code 'DU1'"),
        detail={"feature": 2, "field": "ADM1_PCODE"}),
    Bad("unknown parent code", "localities", unknown_parent,
        ("feature 1", "'parent_code'", "unknown parent code 'ZZ9'"),
        detail={"feature": 1, "field": "parent_code"}),
    Bad("non-numeric value", "population", non_numeric,
        ("row 3", "'population'", "'abc' is not a number"),
        detail={"row": 3, "field": "population"}),
    Bad("unparseable date", "events", bad_date, ("row 3", "'event_date'", "cannot parse"),
        detail={"row": 3, "field": "event_date"}),
    Bad("lat/lon out of range", "institutions", out_of_range,
        ("row 2", "'longitude'", "outside −180…180"), detail={"row": 2, "field": "longitude"}),
    Bad("lat/lon swapped", "institutions", swapped, ("row 2", "'latitude'", "swapped"),
        detail={"row": 2, "field": "latitude"}),
    Bad("zip without .shp", "localities", zip_without_shp, ("no .shp",)),
    Bad("zip with ../x.shp", "localities", zip_traversal, ("path traversal", "../x.shp"),
        detail={"entry": "../x.shp"}),
    Bad("zip bomb", "localities", zip_bomb, ("zip bomb",), status=413),
    Bad("huge raster header", "hazard", huge_header,
        ("1,000,000 × 1,000,000", "over the limit"), status=413, options=HAZARD),
    Bad("VRT disguised as .tif", "hazard", vrt_as_tif, ("not a geo file", "VRT"),
        options=HAZARD),
    Bad("unknown observation locality", "observations", unknown_locality,
        ("row 2", "'locality_code'", "unknown locality code 'NOPE1'"),
        detail={"row": 2, "field": "locality_code"}),
    Bad("unknown indicator", "observations", unknown_indicator,
        ("row 2", "'indicator'", "unknown indicator 'no_such_indicator'"),
        detail={"row": 2, "field": "indicator"}),
    Bad("hazard without a name", "hazard", good_hazard, ("'name'", "required"),
        detail={"field": "name"}, names_file=False),
    Bad("threshold=abc", "hazard", good_hazard, ("'threshold'", "valid number"),
        options={"name": "bad-layer", "threshold": "abc"}, detail={"field": "threshold"},
        names_file=False),
    Bad("level_thresholds={bad", "hazard", good_hazard, ("'level_thresholds'", "dictionary"),
        options={"name": "bad-layer", "level_thresholds": "{low: 1"},
        detail={"field": "level_thresholds"}, names_file=False),
    Bad("field option naming a URL", "localities", good_localities, ("no such column",),
        options={"code_field": "/vsicurl/http://127.0.0.1:9/x"},
        detail={"field": "/vsicurl/http://127.0.0.1:9/x"}),
]


def check_details(details: list[dict[str, Any]], case: Bad, file_name: str) -> None:
    """Assert the first error detail names the file (if any), the location and the field."""
    first = details[0]
    if case.names_file:
        assert first["file"] == file_name, first
    for key, value in case.detail.items():
        assert first[key] == value, (key, first)
    assert first["problem"]


def check_message(message: str, case: Bad, file_name: str) -> None:
    """Assert one message says the file, where, which field and what is wrong."""
    if case.names_file:
        assert file_name in message, message
    for part in case.parts:
        assert part in message, (part, message)


@pytest.mark.usefixtures("base_region")
@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input_through_the_api(stack: Stack, client: httpx.Client, tmp_path: Path,
                                   case: Bad) -> None:
    path = case.build(tmp_path)
    before = snapshot(stack)
    response = upload(client, case.kind, path, **case.options)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    check_message(body["message"], case, path.name)
    check_details(body["details"], case, path.name)
    assert "Traceback" not in response.text
    assert_nothing_left(stack, before)


@pytest.mark.usefixtures("base_region")
@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input_through_the_cli(stack: Stack, tmp_path: Path, case: Bad) -> None:
    path = case.build(tmp_path)
    before = snapshot(stack)
    args = [item for key, value in case.options.items() for item in ("-o", f"{key}={value}")]
    result = run_cli(stack, case.kind, path, *args)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    # Progress lines come first; then one message, and its details indented below it.
    messages = [line for line in result.stderr.splitlines() if line.startswith("riskatlas: ")]
    assert len(messages) == 1, result.stderr
    check_message(messages[0], case, path.name)
    assert_nothing_left(stack, before)


def test_bad_input_on_the_async_path_fails_the_job(stack: Stack, client: httpx.Client,
                                                   tmp_path: Path) -> None:
    before = snapshot(stack)
    accepted = upload(client, "localities", duplicate_codes(tmp_path), wait=False)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(client, accepted.json()["job_id"])
    assert job["status"] == "failed"
    assert "dup.geojson, feature 2, field 'ADM1_PCODE': duplicate code 'DU1'" in job["message"]
    assert job["errors"][0] == {
        "code": "invalid_input", "file": "dup.geojson", "feature": 2, "field": "ADM1_PCODE",
        "problem": "duplicate code 'DU1': features 1 and 2 both have it"}
    assert_nothing_left(stack, before)


def test_cli_upload_over_the_size_limit(stack: Stack, tmp_path: Path) -> None:
    before = snapshot(stack)
    result = run_cli(stack, "hazard", hazard_raster(tmp_path), "--name", "too-big",
                     RISKATLAS_MAX_UPLOAD_BYTES="1000")
    assert result.returncode == 1
    assert "over the limit of 1,000 bytes" in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_left(stack, before)


def test_cli_refuses_a_badly_typed_flag_without_a_traceback(stack: Stack, tmp_path: Path) -> None:
    result = run_cli(stack, "hazard", hazard_raster(tmp_path), "--name", "x",
                     "--threshold", "abc")
    assert result.returncode == 2
    assert "--threshold" in result.stderr and "Traceback" not in result.stderr


# --- a process killed mid-ingest ---------------------------------------------------------


def _job_of(stack: Stack, file_name: str) -> Any:
    rows = stack.rows("SELECT id, status, progress, worker_pid FROM jobs "
                      "WHERE params->>'file' = :f ORDER BY created_at DESC LIMIT 1", f=file_name)
    return rows[0] if rows else None


@pytest.mark.slow
def test_killed_cli_leaves_nothing_after_the_next_start(stack: Stack, tmp_path: Path) -> None:
    source = big_raster(tmp_path / "killme.tif", 6000)
    before = snapshot(stack)
    child = subprocess.Popen(cli_command("hazard", source, "--name", "killed-layer"), cwd=REPO,
                             env=cli_env(stack), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            job = _job_of(stack, "killme.tif")
            # Well into writing the COG: staged copy and partial files exist.
            if job is not None and job.status == "running" and job.progress >= 0.1:
                break
            assert child.poll() is None, "the ingest finished before it could be killed"
            assert time.monotonic() < deadline, "the ingest never got going"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        # Reap the child: a zombie still "exists" for os.kill(pid, 0).
        child.kill()
        child.wait()
    assert _job_of(stack, "killme.tif").status == "running"
    assert snapshot(stack)["staging"] != before["staging"], "nothing was half-done"
    # The next start of the app (its lifespan) cleans up.
    with LiveServer(stack.settings):
        pass
    job = _job_of(stack, "killme.tif")
    assert job.status == "failed"
    record = stack.rows("SELECT message, errors FROM jobs WHERE id = :id", id=job.id)[0]
    assert "interrupted" in record.message
    assert record.errors == [{"code": "interrupted"}]
    assert stack.scalar("SELECT count(*) FROM raster_layers WHERE name = 'killed-layer'") == 0
    assert_nothing_left(stack, before)
    assert list(stack.settings.storage.staging_dir.iterdir()) == []


def test_orphan_cog_of_a_dead_job_is_removed_on_recovery(stack: Stack) -> None:
    # A kill between moving the COG into place and committing leaves a file no row names.
    job_id = create_job(stack.engine, "ingest:hazard", {"file": "orphan.tif"}, "raster:orphan")
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = 'running', worker_pid = :pid "
                          "WHERE id = :id"), {"pid": _dead_pid(), "id": job_id})
    orphan = stack.settings.storage.raster_dir / "424242" / f"v1-{job_id}.tif"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"partial")
    keep = stack.settings.storage.raster_dir / "424242" / f"v1-{uuid.uuid4()}.tif"
    keep.write_bytes(b"not ours either")
    assert recover_interrupted_jobs(stack.engine, stack.settings.storage.staging_dir) >= 1
    assert remove_orphan_rasters(stack.engine, stack.settings.storage.raster_dir) == 2
    assert not orphan.exists() and not keep.exists()
    assert stack.scalar("SELECT status FROM jobs WHERE id = :id", id=job_id) == "failed"
    orphan.parent.rmdir()


def _dead_pid() -> int:
    """Return the pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid

