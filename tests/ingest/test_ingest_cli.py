"""Every kind of layer through `riskatlas ingest KIND FILE` run as a child process.

The CLI and the API share one code path (`geo.ingest.service`); these tests check what is
the CLI's own: options from flags and `-o KEY=VALUE`, progress on stderr, a one-line JSON
summary on stdout, and rows that land in PostGIS exactly as through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rio_cogeo.cogeo import cog_validate
from stack_helpers import (
    SCRIPT,
    Region,
    Stack,
    cli_summary,
    events_csv,
    hazard_raster,
    indicators_csv,
    institutions_csv,
    localities_files,
    observations_csv,
    population_long,
    population_raster,
    population_wide,
    priorities_csv,
    run_cli,
)

REGION = Region("CL", x=33.0, y=-5.0)


@pytest.fixture(scope="module")
def loaded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the CLI once per kind, in dependency order; return each run's output."""
    tmp = tmp_path_factory.mktemp("cli-kinds")
    adm1, adm2 = localities_files(tmp, REGION)
    runs: list[tuple[str, str, Path, tuple[str, ...]]] = [
        ("adm1", "localities", adm1, ()),
        ("adm2", "localities", adm2, ("--level", "2")),
        ("population_wide", "population", population_wide(tmp, REGION), ("--year", "2019")),
        ("population_long", "population", population_long(tmp, REGION), ()),
        ("population_count", "population", population_raster(tmp, REGION, "count.tif"),
         ("--name", "cl-pop-count")),
        ("population_density", "population", population_raster(tmp, REGION, "density.tif"),
         ("--name", "cl-pop-density", "--density")),
        ("hazard", "hazard", hazard_raster(tmp),
         ("--name", "cl-flood", "--hazard-kind", "flood", "--unit", "m", "--threshold", "0.5",
          "-o", 'level_thresholds={"low": 1, "high": 4}', "-o", "description=Flood depth")),
        ("events", "events", events_csv(tmp, REGION), ("--layer-name", "cl-acled")),
        ("institutions", "institutions", institutions_csv(tmp, REGION), ()),
        ("indicators", "indicators", indicators_csv(tmp, REGION.prefix), ()),
        ("observations", "observations", observations_csv(tmp, REGION), ()),
        ("priorities", "priorities", priorities_csv(tmp, REGION), ()),
    ]
    outputs: dict[str, Any] = {}
    for key, kind, path, args in runs:
        result = run_cli(stack, kind, path, *args)
        assert result.returncode == 0, (key, result.stdout, result.stderr)
        outputs[key] = result
    return outputs


def test_every_kind_prints_a_summary(loaded: dict[str, Any]) -> None:
    expected_rows = {"adm1": 1, "adm2": 2, "population_wide": 2, "population_long": 3,
                     "events": 3, "institutions": 3, "indicators": 2, "observations": 3,
                     "priorities": 3}
    for key, rows in expected_rows.items():
        assert cli_summary(loaded[key])["rows"] == rows, key
    assert cli_summary(loaded["hazard"])["version"] == 1
    assert cli_summary(loaded["hazard"])["layer"] == "cl-flood"
    assert cli_summary(loaded["adm2"])["levels"] == {"2": 2}


def test_progress_goes_to_stderr_without_a_traceback(loaded: dict[str, Any]) -> None:
    for key, result in loaded.items():
        assert "Traceback" not in result.stderr, key
        assert result.stdout.startswith("loaded "), key
    hazard = loaded["hazard"].stderr
    assert "flood.tif" in hazard and "writing the COG" in hazard and "100%" in hazard
    # Warnings (notes) follow the summary on stdout.
    assert "note: admin level 1 inferred" in loaded["adm1"].stdout


def test_cli_rows_match_the_api_path(stack: Stack, loaded: dict[str, Any]) -> None:
    a, b = REGION.adm2
    rows = {r.code: r for r in stack.rows(
        "SELECT code, name, parent_code, population, names, ST_SRID(geom) AS srid "
        "FROM localities WHERE code LIKE 'CL%'")}
    assert rows[b].name == SCRIPT
    assert rows[a].names == {"ar": "الرقة", "en": "Séguéla-Nord"}
    assert rows[a].parent_code == REGION.adm1
    assert {r.population for r in rows.values()} == {5000, 2000, 3000}
    assert {r.srid for r in rows.values()} == {4326}
    events = stack.rows("SELECT e.fatalities FROM events e JOIN event_layers l "
                        "ON l.id = e.layer_id WHERE l.name = 'cl-acled' ORDER BY e.event_date")
    assert [e.fatalities for e in events] == [3, 0, None]
    assert stack.scalar("SELECT count(*) FROM observations o JOIN localities l "
                        "ON l.id = o.locality_id WHERE l.code LIKE 'CL%'") == 3


def test_cli_rasters_are_cogs_with_their_options(stack: Stack, loaded: dict[str, Any]) -> None:
    rows = {r.name: r for r in stack.rows(
        "SELECT l.name, l.kind, l.unit, l.threshold, l.level_thresholds, l.description, "
        "v.path, v.statistics FROM raster_layers l JOIN raster_versions v ON v.layer_id = l.id "
        "WHERE l.name LIKE 'cl-%'")}
    assert set(rows) == {"cl-flood", "cl-pop-count", "cl-pop-density"}
    flood = rows["cl-flood"]
    assert (flood.kind, flood.unit, flood.threshold) == ("flood", "m", 0.5)
    assert flood.level_thresholds == {"low": 1, "high": 4}
    assert flood.description == "Flood depth"
    assert rows["cl-pop-density"].statistics["density_converted"] is True
    assert rows["cl-pop-count"].statistics["total"] == pytest.approx(997.5)
    for row in rows.values():
        assert Path(row.path).is_relative_to(stack.settings.storage.raster_dir)
        assert cog_validate(row.path, quiet=True)[0]


def test_hazard_reupload_via_cli_is_version_two(stack: Stack, tmp_path: Path,
                                                loaded: dict[str, Any]) -> None:
    v1_path = stack.scalar("SELECT v.path FROM raster_versions v JOIN raster_layers l "
                           "ON l.id = v.layer_id WHERE l.name = 'cl-flood'")
    result = run_cli(stack, "hazard", hazard_raster(tmp_path, value=2.0), "--name", "cl-flood")
    assert cli_summary(result)["version"] == 2
    assert Path(v1_path).is_file()
    versions = stack.rows("SELECT v.version, (v.statistics->>'max')::float AS max "
                          "FROM raster_versions v JOIN raster_layers l ON l.id = v.layer_id "
                          "WHERE l.name = 'cl-flood' ORDER BY 1")
    assert [(v.version, v.max) for v in versions] == [(1, 6.0), (2, 12.0)]


def test_nested_folder_shapefile_zip_loads(stack: Stack, tmp_path: Path) -> None:
    import zipfile

    import geopandas as gpd
    from shapely.geometry import box

    frame = gpd.GeoDataFrame({"ADM1_PCODE": ["NZ1"], "ADM1_EN": ["Nested"]},
                             geometry=[box(40, 1, 40.5, 1.5)], crs="EPSG:4326")
    frame.to_file(tmp_path / "units.shp")
    archive = tmp_path / "nested.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in tmp_path.glob("units.*"):
            zipped.write(part, f"export/2024/boundaries/{part.name}")
    result = run_cli(stack, "localities", archive)
    assert cli_summary(result)["rows"] == 1
    assert stack.scalar("SELECT name FROM localities WHERE code = 'NZ1'") == "Nested"


def test_option_values_that_are_not_json_stay_text(stack: Stack, tmp_path: Path) -> None:
    result = run_cli(stack, "hazard", hazard_raster(tmp_path), "--name", "cl-brace",
                     "-o", "description={draft} depth", "-o", "unit=")
    assert cli_summary(result)["layer"] == "cl-brace"
    row = stack.rows("SELECT description, unit FROM raster_layers WHERE name = 'cl-brace'")[0]
    assert (row.description, row.unit) == ("{draft} depth", None)


def test_malformed_option_pair_is_one_clear_line(stack: Stack, tmp_path: Path) -> None:
    result = run_cli(stack, "hazard", hazard_raster(tmp_path), "--name", "cl-x", "-o", "unit")
    assert result.returncode == 1
    assert "riskatlas: --option 'unit' must look like KEY=VALUE" in result.stderr
    assert "Traceback" not in result.stderr
