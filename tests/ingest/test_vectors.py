"""Vector and table reading, geometry checks and the per-kind normalisers."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from ingest_helpers import DATA, assert_clean, assert_names, needs, write_zip
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from geo.errors import ValidationError
from geo.ingest.vectors import (
    canonical_subgroup,
    normalise_events,
    normalise_indicators,
    normalise_institutions,
    normalise_localities,
    normalise_observations,
    normalise_population_table,
    normalise_priorities,
    read_table,
    read_vector,
)

BOWTIE = Polygon([(30, -2), (31, -1), (31, -2), (30, -1), (30, -2)])


def write_geojson(path: Path, features: list[dict], crs: str | None = None) -> Path:
    document: dict = {"type": "FeatureCollection", "features": features}
    if crs:
        document["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def feature(properties: dict, geometry: dict | None) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def square(x: float, y: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y]]]}


def write_csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def cod_layer(tmp: Path, codes: list[str | None], names: list[str] | None = None) -> Path:
    names = names or [f"Unit {i}" for i in range(len(codes))]
    features = [
        feature({"ADM2_PCODE": code, "ADM2_EN": name, "ADM1_PCODE": "RW1"}, square(30 + i, -2))
        for i, (code, name) in enumerate(zip(codes, names, strict=True))
    ]
    return write_geojson(tmp / "adm2.geojson", features)


# --- geometry and CRS checks ----------------------------------------------------------


def test_geojson_without_crs_member_is_wgs84(tmp_path: Path, upload: Callable) -> None:
    with upload(cod_layer(tmp_path, ["RW11", "RW12"])) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    assert frame.crs.to_epsg() == 4326
    assert set(frame.geom_type) == {"MultiPolygon"}


def test_vector_is_reprojected_to_4326(tmp_path: Path, upload: Callable) -> None:
    frame = gpd.GeoDataFrame({"ADM1_PCODE": ["A1"]}, geometry=[box(30, -2, 31, -1)], crs=4326)
    frame.to_crs(32735).to_file(tmp_path / "utm.gpkg")
    with upload(tmp_path / "utm.gpkg") as uploaded:
        result = read_vector(uploaded, expected_geometry="polygon")
    assert result.crs.to_epsg() == 4326
    assert result.total_bounds == pytest.approx([30, -2, 31, -1], abs=1e-6)


def test_shapefile_without_prj_is_refused(tmp_path: Path, upload: Callable, workdir: Path) -> None:
    gpd.GeoDataFrame({"code": ["A"]}, geometry=[box(0, 0, 1, 1)], crs=4326).to_file(
        tmp_path / "u.shp"
    )
    source = write_zip(
        tmp_path / "noprj.zip", {f"u.{e}": tmp_path / f"u.{e}" for e in ("shp", "shx", "dbf")}
    )
    uploaded = upload(source)
    with pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, "noprj.zip", "no coordinate reference system", ".prj")
    uploaded.cleanup()
    assert_clean(workdir)


def test_gpkg_without_crs_is_refused(tmp_path: Path, upload: Callable) -> None:
    gpd.GeoDataFrame({"code": ["A"]}, geometry=[box(0, 0, 1, 1)]).to_file(tmp_path / "x.gpkg")
    with upload(tmp_path / "x.gpkg") as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, "x.gpkg", "no coordinate reference system")


@pytest.mark.parametrize(
    ("geometry", "expected", "got"),
    [
        ({"type": "Point", "coordinates": [30, -2]}, "polygon", "Point"),
        ({"type": "LineString", "coordinates": [[30, -2], [31, -1]]}, "polygon", "LineString"),
        (square(30, -2), "point", "Polygon"),
    ],
)
def test_wrong_geometry_type_names_the_feature(
    tmp_path: Path, upload: Callable, geometry: dict, expected: str, got: str
) -> None:
    features = [feature({"code": "A"}, square(30, -2) if expected == "polygon" else
                        {"type": "Point", "coordinates": [30, -2]}),
                feature({"code": "B"}, geometry)]
    source = write_geojson(tmp_path / "mixed.geojson", features)
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry=expected)
    assert_names(caught.value, "mixed.geojson", "feature 2", "wrong geometry type", got,
                 feature=2, field="geometry")


def test_empty_and_null_geometries_name_the_feature(tmp_path: Path, upload: Callable) -> None:
    features = [
        feature({"code": "A"}, square(30, -2)),
        feature({"code": "B"}, {"type": "Polygon", "coordinates": []}),
        feature({"code": "C"}, None),
    ]
    source = write_geojson(tmp_path / "holes.geojson", features)
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, "holes.geojson", "feature 2", feature=2)
    assert [d["feature"] for d in caught.value.details] == [2, 3]


def test_invalid_polygons_are_repaired_and_counted(tmp_path: Path, upload: Callable) -> None:
    frame = gpd.GeoDataFrame(
        {"ADM1_PCODE": ["A", "B"], "ADM1_EN": ["a", "b"]},
        geometry=[BOWTIE, box(32, -2, 33, -1)],
        crs=4326,
    )
    frame.to_file(tmp_path / "bow.gpkg")
    with upload(tmp_path / "bow.gpkg") as uploaded:
        result = read_vector(uploaded, expected_geometry="polygon")
    assert result.attrs["repaired_polygons"] == 1
    assert result.is_valid.all()
    assert isinstance(result.geometry.iloc[0], MultiPolygon)
    assert result.geometry.iloc[0].area == pytest.approx(0.5)
    localities = normalise_localities(result, file_name="bow.gpkg")
    assert any("1 invalid polygons were repaired" in w for w in localities.warnings)


def test_impossible_bounds_are_refused(tmp_path: Path, upload: Callable) -> None:
    source = write_geojson(tmp_path / "far.geojson", [feature({"code": "A"}, square(200, 95))])
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, "far.geojson", "impossible coordinates", feature=1)


def test_polygon_nested_as_multipolygon_is_called_malformed(
    tmp_path: Path, upload: Callable
) -> None:
    rings = square(30, -2)["coordinates"]
    source = write_geojson(
        tmp_path / "bad.json",
        [feature({"ADM1_PCODE": "X"}, {"type": "Polygon", "coordinates": [rings]})],
    )
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, "bad.json", "malformed", 'declared "Polygon"', "MultiPolygon")


# --- CSV points -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field", "phrase"),
    [
        ("91.2,30", "lat", "latitude 91.2 is outside −90…90"),
        ("-95,-200", "lat", "latitude -95 is outside"),
        ("-2,181", "lon", "longitude 181 is outside −180…180"),
        ("106.8,-6.2", "lat", "look swapped"),
        ("abc,30", "lat", "'abc' is not a number"),
        (",30", "lat", "missing"),
    ],
)
def test_bad_coordinates_name_row_and_field(
    tmp_path: Path, upload: Callable, workdir: Path, row: str, field: str, phrase: str
) -> None:
    source = write_csv(tmp_path / "sites.csv", f"lat,lon,name\n-2,30,ok\n{row},bad\n")
    uploaded = upload(source)
    with pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="point")
    assert_names(caught.value, "sites.csv", "row 3", phrase, row=3, field=field)
    uploaded.cleanup()
    assert_clean(workdir)


def test_csv_cannot_be_polygons(tmp_path: Path, upload: Callable) -> None:
    source = write_csv(tmp_path / "p.csv", "lat,lon\n1,2\n")
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, "p.csv", "polygons")


# --- localities -----------------------------------------------------------------------


def test_cod_localities_are_understood(tmp_path: Path, upload: Callable) -> None:
    with upload(cod_layer(tmp_path, ["RW11", "RW12"])) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    result = normalise_localities(frame, file_name="adm2.geojson")
    assert list(result.frame.columns) == [
        "code", "name", "level", "parent_code", "population", "names", "geometry",
    ]
    assert list(result.frame["code"]) == ["RW11", "RW12"]
    assert set(result.frame["level"]) == {2}
    assert set(result.frame["parent_code"]) == {"RW1"}


def test_duplicate_codes_name_both_features(tmp_path: Path, upload: Callable) -> None:
    with upload(cod_layer(tmp_path, ["RW11", "RW12", "RW11"])) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    with pytest.raises(ValidationError) as caught:
        normalise_localities(frame, file_name="adm2.geojson")
    assert_names(caught.value, "adm2.geojson", "duplicate code 'RW11'", "features 1 and 3",
                 feature=3, field="ADM2_PCODE")


def test_missing_code_names_the_feature(tmp_path: Path, upload: Callable) -> None:
    with upload(cod_layer(tmp_path, ["RW11", None])) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    with pytest.raises(ValidationError) as caught:
        normalise_localities(frame, file_name="adm2.geojson")
    assert_names(caught.value, "adm2.geojson", "code is missing", feature=2, field="ADM2_PCODE")


def test_explicit_mapping_and_names_kept_verbatim(tmp_path: Path, upload: Callable) -> None:
    names = ["<b>Bold</b> & <script>alert(1)</script>", "الفيوم", "Bafwasende-Ébène"]
    features = [
        feature({"id_code": f"EG{i}", "label": n, "pop": "1,200"}, square(30 + i, 0))
        for i, n in enumerate(names)
    ]
    with upload(write_geojson(tmp_path / "eg.geojson", features)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    result = normalise_localities(
        frame, file_name="eg.geojson", level=3, code_field="id_code", name_field="label",
        population_field="pop",
    )
    assert list(result.frame["name"]) == names
    assert list(result.frame["population"]) == [1200.0] * 3


def test_non_numeric_population_in_localities(tmp_path: Path, upload: Callable) -> None:
    features = [feature({"ADM1_PCODE": "A", "population": "many"}, square(30, 0))]
    with upload(write_geojson(tmp_path / "a.geojson", features)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    with pytest.raises(ValidationError) as caught:
        normalise_localities(frame, file_name="a.geojson")
    assert_names(caught.value, "a.geojson", "'many' is not a number", feature=1,
                 field="population")


def test_level_is_required_without_cod_columns(tmp_path: Path, upload: Callable) -> None:
    features = [feature({"code": "A"}, square(30, 0))]
    with upload(write_geojson(tmp_path / "a.geojson", features)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    with pytest.raises(ValidationError, match="pass level"):
        normalise_localities(frame, file_name="a.geojson")


# --- population tables ----------------------------------------------------------------


def test_population_long_form(tmp_path: Path, upload: Callable) -> None:
    source = write_csv(
        tmp_path / "pop.csv",
        "countryCodeISO3,adminLevel,placeCode,indicator,value\n"
        "RWA,1,RW1,populationTotal,100\nRWA,1,RW1,populationUnder5,7\nRWA,2,RW11,populationTotal,60\n",
    )
    with upload(source) as uploaded:
        result = normalise_population_table(read_table(uploaded), file_name="pop.csv")
    assert result.frame[["code", "population", "level"]].values.tolist() == [
        ["RW1", 100.0, 1], ["RW11", 60.0, 2],
    ]
    assert "1 rows with other indicators were ignored" in result.warnings[0]


def test_population_wide_form_with_bom_and_year(tmp_path: Path, upload: Callable) -> None:
    source = write_csv(tmp_path / "pop.csv", "code,population,year\nNA01,1 200,2020\n", bom=True)
    with upload(source) as uploaded:
        result = normalise_population_table(read_table(uploaded), file_name="pop.csv")
    row = result.frame.iloc[0]
    assert (row["code"], row["population"], row["year"]) == ("NA01", 1200.0, 2020)
    assert row["level"] is pd.NA


@pytest.mark.parametrize(
    ("value", "phrase"),
    [("lots", "'lots' is not a number"), ("-5", "below the minimum"), ("", "missing")],
)
def test_population_bad_value_names_row_and_field(
    tmp_path: Path, upload: Callable, value: str, phrase: str
) -> None:
    source = write_csv(tmp_path / "pop.csv", f"code,population\nA,10\nB,{value}\n")
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        normalise_population_table(read_table(uploaded), file_name="pop.csv")
    assert_names(caught.value, "pop.csv", "row 3", "'population'", phrase, row=3,
                 field="population")


def test_population_duplicate_code(tmp_path: Path, upload: Callable) -> None:
    source = write_csv(tmp_path / "pop.csv", "code,population\nA,10\nA,11\n")
    with upload(source) as uploaded, pytest.raises(ValidationError) as caught:
        normalise_population_table(read_table(uploaded), file_name="pop.csv")
    assert_names(caught.value, "pop.csv", "rows 2 and 3", row=3)


# --- events ---------------------------------------------------------------------------

ACLED = (
    "event_date,event_type,sub_event_type,actor1,fatalities,latitude,longitude,notes\n"
    "15 March 2023,Battles,Armed clash,Militia X,3,4.36,18.55,<i>note</i>\n"
    "02 April 2023,Violence against civilians,Attack,Group Y,0,5.1,19.2,\n"
)


def test_acled_events(tmp_path: Path, upload: Callable) -> None:
    with upload(write_csv(tmp_path / "acled.csv", ACLED)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="point")
    result = normalise_events(frame, file_name="acled.csv")
    first = result.frame.iloc[0]
    assert first["event_date"] == dt.date(2023, 3, 15)
    assert (first["event_type"], first["actor"], first["fatalities"]) == (
        "Battles", "Militia X", 3.0,
    )
    assert first["attributes"] == {"sub_event_type": "Armed clash", "notes": "<i>note</i>"}
    json.dumps(list(result.frame["attributes"]))


@pytest.mark.parametrize(
    ("date", "deaths", "field", "phrase"),
    [
        ("31/02/2023", "1", "event_date", "cannot parse '31/02/2023' as a date"),
        ("yesterday", "1", "event_date", "cannot parse 'yesterday'"),
        ("2023-01-05", "two", "fatalities", "'two' is not a number"),
        ("2023-01-05", "-1", "fatalities", "below the minimum"),
    ],
)
def test_bad_event_values_name_row_and_field(
    tmp_path: Path, upload: Callable, date: str, deaths: str, field: str, phrase: str
) -> None:
    text = f"event_date,fatalities,lat,lon\n2023-01-04,0,1,1\n{date},{deaths},1,1\n"
    with upload(write_csv(tmp_path / "ev.csv", text)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="point")
    with pytest.raises(ValidationError) as caught:
        normalise_events(frame, file_name="ev.csv")
    assert_names(caught.value, "ev.csv", "row 3", phrase, row=3, field=field)


# --- institutions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Health Centre", "health_centre"),
        ("District Hospital", "hospital"),
        ("Puskesmas Kecamatan", "health_centre"),
        ("RSU", "hospital"),
        ("RSUD", "hospital"),
        ("Klinik Pemerintah", "clinic"),
        ("Poste de santé", "health_post"),
        ('Centre de Santé "C"', "health_centre"),
        ("Hôpital Préfectoraux", "hospital"),
        ("pharmacy", "pharmacy"),
        ("doctors", "clinic"),
        ("Secondary School", "school_secondary"),
        ("SMK", "school_vocational"),
        ("water_point", "water_point"),
        ("Womens shelter", "shelter"),
        ("Bakery", "other"),
    ],
)
def test_institution_type_mapping(label: str, expected: str) -> None:
    frame = gpd.GeoDataFrame(
        {"type": [label], "name": ["x"]}, geometry=[Point(30, -2)], crs=4326
    ).rename_axis("feature")
    frame.index = frame.index + 1
    result = normalise_institutions(frame, file_name="f.geojson")
    assert result.frame["type"].iloc[0] == expected
    assert result.frame["attributes"].iloc[0]["source_type"] == label


def test_institutions_from_csv_with_capacity_and_sensitive(
    tmp_path: Path, upload: Callable
) -> None:
    text = (
        "Facility name,Facility type,Lat,Long,beds,sensitive,note\n"
        "Centre Sainte-Thérèse,Health Centre,-2,30,12,no,\n"
        "Safe house,shelter,-2.1,30.1,,yes,/etc/passwd\n"
    )
    with upload(write_csv(tmp_path / "f.csv", text, bom=True)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="point")
    result = normalise_institutions(frame, file_name="f.csv").frame
    assert list(result["name"]) == ["Centre Sainte-Thérèse", "Safe house"]
    assert list(result["type"]) == ["health_centre", "shelter"]
    assert list(result["sensitive"]) == [False, True]
    assert result["capacity"].iloc[0] == 12.0
    assert result["attributes"].iloc[1]["note"] == "/etc/passwd"


def test_institution_bad_sensitive_flag(tmp_path: Path, upload: Callable) -> None:
    text = "name,type,lat,lon,sensitive\na,clinic,1,1,maybe\n"
    with upload(write_csv(tmp_path / "f.csv", text)) as uploaded:
        frame = read_vector(uploaded, expected_geometry="point")
    with pytest.raises(ValidationError) as caught:
        normalise_institutions(frame, file_name="f.csv")
    assert_names(caught.value, "f.csv", "'maybe' is not a yes/no value", row=2,
                 field="sensitive")


# --- indicators, observations, priorities ---------------------------------------------


def test_indicators_from_csv_and_yaml(tmp_path: Path, upload: Callable) -> None:
    csv_text = (
        "code,name,dimension,polarity,cutoff,unit\n"
        "stunting,Stunting,Health,higher_is_worse,30,%\n"
    )
    yaml_text = (
        "indicators:\n  - code: stunting\n    name: Stunting\n    dimension: health\n"
        "    polarity: higher is worse\n    cutoff: 30\n    unit: '%'\n    target: 20\n"
    )
    with upload(write_csv(tmp_path / "i.csv", csv_text)) as a, upload(
        write_csv(tmp_path / "i.yaml", yaml_text)
    ) as b:
        from_csv = normalise_indicators(read_table(a), file_name="i.csv").frame
        from_yaml = normalise_indicators(read_table(b), file_name="i.yaml").frame
    for frame in (from_csv, from_yaml):
        row = frame.iloc[0]
        assert (row["code"], row["dimension"], row["polarity"], row["cutoff"]) == (
            "stunting", "health", "higher_is_worse", 30.0,
        )
    assert from_yaml["target"].iloc[0] == 20.0


def test_indicator_bad_dimension(tmp_path: Path, upload: Callable) -> None:
    text = "code,name,dimension,polarity\nx,X,happiness,higher_is_better\n"
    with upload(write_csv(tmp_path / "i.csv", text)) as uploaded:
        with pytest.raises(ValidationError) as caught:
            normalise_indicators(read_table(uploaded), file_name="i.csv")
    assert_names(caught.value, "i.csv", "'happiness' is not one of", row=2, field="dimension")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("sex=female;disability=yes", "disability=yes;sex=female"),
        (" Sex = Female ", "sex=female"),
        ("", "all"),
        ("ALL", "all"),
        ("age=15-24|sex=male", "age=15-24;sex=male"),
    ],
)
def test_canonical_subgroup(raw: str, canonical: str) -> None:
    assert canonical_subgroup(raw) == canonical


def test_observations(tmp_path: Path, upload: Callable) -> None:
    text = (
        "locality_code,indicator,period,subgroup,value,sample_size,source\n"
        "EG24,stunting,2023,sex=female;disability=yes,31.5,120,DHS\n"
        "EG24,stunting,2023,,28,400,DHS\n"
    )
    with upload(write_csv(tmp_path / "o.csv", text)) as uploaded:
        frame = normalise_observations(read_table(uploaded), file_name="o.csv").frame
    assert list(frame["subgroup"]) == ["disability=yes;sex=female", "all"]
    assert list(frame["sample_size"]) == [120, 400]


@pytest.mark.parametrize(
    ("row", "field", "phrase"),
    [
        ("EG24,x,2023,all,n/a,1", "value", "the value is missing"),
        ("EG24,x,2023,all,1.2.3,1", "value", "'1.2.3' is not a number"),
        ("EG24,x,2023,sex,1,1", "subgroup", "not of the form key=value"),
        ("EG24,x,2023,all,1,2.5", "sample_size", "not a whole number"),
        ("EG24,x,2023,all,5,1", "value", "duplicate observation"),
    ],
)
def test_bad_observation_names_row_and_field(
    tmp_path: Path, upload: Callable, row: str, field: str, phrase: str
) -> None:
    header = "locality_code,indicator,period,subgroup,value,sample_size"
    text = f"{header}\nEG24,x,2023,all,1,1\n{row}\n"
    with upload(write_csv(tmp_path / "o.csv", text)) as uploaded:
        with pytest.raises(ValidationError) as caught:
            normalise_observations(read_table(uploaded), file_name="o.csv")
    assert_names(caught.value, "o.csv", phrase, row=3, field=field)


def test_priorities_both_forms(tmp_path: Path, upload: Callable) -> None:
    listed = (
        "locality_code,forum_date,needs\n"
        "EG24,2024-03-01,waste collection; bread | health care\n"
    )
    ranked = (
        "locality_code,forum_date,rank,need\n"
        "EG24,2024-03-01,2,bread\nEG24,2024-03-01,1,waste\n"
    )
    with upload(write_csv(tmp_path / "a.csv", listed)) as a, upload(
        write_csv(tmp_path / "b.csv", ranked)
    ) as b:
        first = normalise_priorities(read_table(a), file_name="a.csv").frame
        second = normalise_priorities(read_table(b), file_name="b.csv").frame
    assert list(first["need"]) == ["waste collection", "bread", "health care"]
    assert list(first["rank"]) == [1, 2, 3]
    assert first["forum_date"].iloc[0] == dt.date(2024, 3, 1)
    assert sorted(second["rank"]) == [1, 2]


def test_priorities_unparseable_forum_date(tmp_path: Path, upload: Callable) -> None:
    text = "locality_code,forum_date,needs\nEG24,someday,water\n"
    with upload(write_csv(tmp_path / "p.csv", text)) as uploaded:
        with pytest.raises(ValidationError) as caught:
            normalise_priorities(read_table(uploaded), file_name="p.csv")
    assert_names(caught.value, "p.csv", "cannot parse 'someday'", row=2, field="forum_date")


def test_arabic_and_accents_survive_csv(tmp_path: Path, upload: Callable) -> None:
    text = "code,population\nالقاهرة,10\nSão Tomé,5\n"
    with upload(write_csv(tmp_path / "p.csv", text, bom=True)) as uploaded:
        frame = normalise_population_table(read_table(uploaded), file_name="p.csv").frame
    assert list(frame["code"]) == ["القاهرة", "São Tomé"]


def test_non_utf8_csv_is_refused(tmp_path: Path, upload: Callable) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("code,name\nA,Sāo\n".encode() + "B,Bafwasendé\n".encode("latin-1"))
    with pytest.raises(ValidationError) as caught:
        upload(path)
    assert_names(caught.value, "latin.csv", "not UTF-8")


# --- real files from ../shared/data ---------------------------------------------------

ADMIN = [
    (f"{country}/admin/{prefix}_adm{level}.geojson", level)
    for country, prefix in (("rwanda", "rwa"), ("central_african_republic", "caf"))
    for level in (1, 2, 3)
]


@pytest.mark.realdata
@pytest.mark.parametrize(("relative", "level"), ADMIN)
def test_real_admin_boundaries_load(upload: Callable, relative: str, level: int) -> None:
    if not (DATA / relative).exists():
        pytest.skip("shared data absent")
    with upload(DATA / relative) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    result = normalise_localities(frame, file_name=uploaded.original_name)
    assert set(result.frame["level"]) == {level}
    assert result.frame["code"].is_unique
    assert result.frame.is_valid.all()
    if relative.endswith("rwa_adm3.geojson"):
        assert "2 invalid polygons were repaired with make_valid" in result.warnings


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative",
    [
        f"{country}/admin/original_ibf/{prefix}_adm{level}.json"
        for country, prefix in (("central_african_republic", "CAF"), ("rwanda", "RWA"))
        for level in (1, 2, 3)
    ],
)
def test_real_malformed_ibf_originals_are_refused(
    upload: Callable, workdir: Path, relative: str
) -> None:
    if not (DATA / relative).exists():
        pytest.skip("shared data absent")
    uploaded = upload(DATA / relative)
    with pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="polygon")
    assert_names(caught.value, Path(relative).name, "malformed", 'declared "Polygon"',
                 field="geometry")
    uploaded.cleanup()
    assert_clean(workdir)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("relative", "levels"),
    [
        ("rwanda/population/population_RWA.csv", {1, 2, 3}),
        ("central_african_republic/population/population_CAF.csv", {1, 2, 3}),
    ],
)
def test_real_population_tables(upload: Callable, relative: str, levels: set[int]) -> None:
    if not (DATA / relative).exists():
        pytest.skip("shared data absent")
    with upload(DATA / relative) as uploaded:
        frame = normalise_population_table(read_table(uploaded), file_name="p.csv").frame
    assert set(frame["level"]) == levels
    assert frame["population"].gt(0).all()


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("rwanda/health/who_public_health_facilities_rwa.csv", {"health_centre": 486}),
        ("central_african_republic/health/who_public_health_facilities_caf.csv",
         {"hospital": 20}),
        ("rwanda/health/healthsites_io_rwa.geojson", {"hospital": 75, "pharmacy": 24}),
        ("central_african_republic/health/healthsites_io_caf.geojson", {"hospital": 423}),
        ("indonesia/jakarta/facilities/rumahsakit.geojson", {"hospital": 191}),
        ("indonesia/jakarta/facilities/puskesmas.geojson", {"health_centre": 334}),
        ("indonesia/jakarta/facilities/klinik.geojson", {"clinic": 1381}),
    ],
)
def test_real_facilities(upload: Callable, relative: str, expected: dict[str, int]) -> None:
    if not (DATA / relative).exists():
        pytest.skip("shared data absent")
    with upload(DATA / relative) as uploaded:
        frame = read_vector(uploaded, expected_geometry="point")
    result = normalise_institutions(frame, file_name=uploaded.original_name)
    counts = result.frame["type"].value_counts().to_dict()
    for kind, count in expected.items():
        assert counts[kind] == count
    json.dumps(list(result.frame["attributes"]))
    if "who_public_health_facilities_caf" in relative:
        assert "10 rows without coordinates were skipped" in result.warnings[0]


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative",
    [
        "central_african_republic/conflict/ucdp_ged_v23_1_caf.fgb",
        "central_african_republic/conflict/ucdp_ged_v23_1_caf.geojson",
    ],
)
def test_real_ucdp_events(upload: Callable, relative: str) -> None:
    if not (DATA / relative).exists():
        pytest.skip("shared data absent")
    with upload(DATA / relative) as uploaded:
        frame = read_vector(uploaded, expected_geometry="point")
    result = normalise_events(frame, file_name=uploaded.original_name).frame
    assert len(result) == 1848
    assert result["fatalities"].sum() == 14948
    assert set(result["event_type"]) == {
        "state-based conflict", "non-state conflict", "one-sided violence",
    }
    assert min(result["event_date"]) >= dt.date(1989, 1, 1)
    json.dumps(list(result["attributes"]))


@needs("indonesia/jakarta/admin/kelurahan_jakarta.shp")
@pytest.mark.realdata
def test_real_jakarta_villages_zipped_shapefile(tmp_path: Path, upload: Callable) -> None:
    source = tmp_path / "kelurahan.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        for ext in ("shp", "shx", "dbf", "prj"):
            path = DATA / f"indonesia/jakarta/admin/kelurahan_jakarta.{ext}"
            archive.write(path, f"jakarta/admin/kelurahan_jakarta.{ext}")
    with upload(source) as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    result = normalise_localities(
        frame, file_name="kelurahan.zip", level=4, code_field="ID", name_field="KEL_NAME2"
    )
    assert len(result.frame) == 261
    assert result.frame["code"].is_unique


@needs("indonesia/admin/idn_bnd_adm1_WFP.json")
@pytest.mark.realdata
def test_real_indonesia_provinces_with_explicit_level(upload: Callable) -> None:
    with upload(DATA / "indonesia/admin/idn_bnd_adm1_WFP.json") as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
    # The ADM2_* columns are leftovers of a dissolve, so the level is given explicitly.
    result = normalise_localities(frame, file_name="idn.json", level=1, name_field="adm1_name")
    assert len(result.frame) == 38
    assert result.frame["code"].str.startswith("ID").all()


def test_line_geometry_is_not_a_point(tmp_path: Path, upload: Callable) -> None:
    frame = gpd.GeoDataFrame({"a": [1]}, geometry=[LineString([(0, 0), (1, 1)])], crs=4326)
    frame.to_file(tmp_path / "l.fgb")
    with upload(tmp_path / "l.fgb") as uploaded, pytest.raises(ValidationError) as caught:
        read_vector(uploaded, expected_geometry="point")
    assert_names(caught.value, "l.fgb", "wrong geometry type", feature=1)
