"""Household microdata: the published Alkire-Foster example through ingest, run and HTTP, and
bad microdata refused over HTTP and the CLI with nothing stored.

The worked example is Alkire & Foster (2011), "Counting and multidimensional poverty
measurement", J. Public Economics 95: 476-487, section 2: four people, four dimensions,
achievements y = [[13.1, 14, 4, 1], [15.2, 7, 5, 0], [12.5, 10, 1, 0], [20, 11, 3, 1]] and
cutoffs z = (13, 12, 3, 1). Deprivation counts c = (0, 2, 4, 1); with equal weights and k = 2
of 4 dimensions the poor are persons 2 and 3 and the paper gives H = 1/2, A = 3/4 and
M0 = H x A = 3/8. By hand from the same matrix: censored headcounts (1/4, 1/2, 1/4, 1/2)
and contributions w_j h_j / M0 = (1/6, 1/3, 1/6, 1/3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stack_helpers import (
    Region,
    Stack,
    assert_nothing_left,
    localities_files,
    population_wide,
    run_cli,
    snapshot,
    upload,
    write_text,
)

from api.settings import ApiSettings  # noqa: F401  (the app's settings are built by LiveServer)
from geo.db import build_engine
from geo.ingest.service import run_ingest_job, start_ingest_job
from geo.keys import create_key
from geo.migrate import upgrade
from geo.runs.lifecycle import run_scores
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer

REGION = Region("AF", x=40.0, y=8.0)


def approx(value: Any) -> Any:
    """Stored results are rounded to 6 places."""
    return pytest.approx(value, abs=1e-6)


ACHIEVEMENTS = [(13.1, 14, 4, 1), (15.2, 7, 5, 0), (12.5, 10, 1, 0), (20, 11, 3, 1)]
# One indicator per human-security dimension, so the default nested weights are 1/4 each,
# and the default k = 1/3 identifies the same poor as k = 2 of 4 (1/4 < 1/3 <= 2/4). The
# fourth is a share (percent) indicator, so each person answers it 0/1: 0 deprives, as
# y < z = 1 does in the paper.
INDICATORS = (
    "code,name,dimension,polarity,cutoff,unit\n"
    "af_income,Income,economic,higher_is_better,13,currency\n"
    "af_schooling,Years of schooling,education,higher_is_better,12,years\n"
    "af_health,Self-reported health,health,higher_is_better,3,score\n"
    "af_insured,Insured people,infrastructure,higher_is_better,,percent\n"
)


@pytest.fixture(scope="module")
def af_stack(new_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Stack]:
    """A database of its own holding the region, the indicators and the four people, scored."""
    url = new_database("riskatlas_households")
    upgrade(url)
    tmp = tmp_path_factory.mktemp("households")
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=tmp / "data"))
    engine = build_engine(url, settings)
    adm1, adm2 = localities_files(tmp, REGION)
    village = REGION.adm2[0]
    people = "\n".join(f"{village},2011,hh{i},{i},1,{sex},{a},{b},{c},{d}" for i, (
        (a, b, c, d), sex) in enumerate(zip(ACHIEVEMENTS, ("female", "male", "female", "male"),
                                           strict=True), start=1))
    # Loaded in the order users do: boundaries, population, then the survey.
    files = [("localities", adm1), ("localities", adm2),
             ("population", population_wide(tmp, REGION)),
             ("indicators", write_text(tmp / "indicators.csv", INDICATORS)),
             ("households", write_text(tmp / "people.csv", (
                 "locality_code,period,household_id,person_id,weight,sex,af_income,"
                 "af_schooling,af_health,af_insured\n" + people + "\n")))]
    for kind, path in files:
        job_id = start_ingest_job(engine, kind, {}, path.name)
        run_ingest_job(engine, settings, job_id, kind, path, path.name, {})
    run_scores(engine, settings)
    uploader = create_key(engine, "households", "uploader").secret
    analyst = create_key(engine, "households (analyst)", "analyst").secret
    try:
        with LiveServer(settings) as server:
            yield Stack(url, settings, engine, server.base_url, uploader, analyst)
    finally:
        engine.dispose()


def profile(stack: Stack, code: str, key: str | None = None) -> dict[str, Any]:
    with stack.client(key) as client:
        response = client.get(f"/api/v1/localities/{code}/risk")
    assert response.status_code == 200, response.text
    return response.json()


def test_published_alkire_foster_example_through_ingest_run_and_http(af_stack: Stack) -> None:
    md = profile(af_stack, REGION.adm2[0], "analyst")["multidimensional"]
    assert md["method"] == "alkire_foster"
    assert md["weights"] == approx({"af_income": 0.25, "af_schooling": 0.25,
                                           "af_health": 0.25, "af_insured": 0.25})
    whole = md["all"]
    assert whole["sample_size"] == 4 and whole["poor"] == 2
    assert whole["H"] == approx(1 / 2)
    assert whole["A"] == approx(3 / 4)
    assert whole["M0"] == approx(3 / 8)
    expected = {"af_income": (1 / 4, 1 / 6), "af_schooling": (1 / 2, 1 / 3),
                "af_health": (1 / 4, 1 / 6), "af_insured": (1 / 2, 1 / 3)}
    for code, (censored, contribution) in expected.items():
        assert whole["indicators"][code]["censored"] == approx(censored)
        assert whole["indicators"][code]["contribution"] == approx(contribution)
    # Standard error with every person their own cluster: the sample standard deviation of
    # c_i(k) = (0, 2/4, 4/4, 0) over sqrt(n), worked by hand.
    scores = np.array([0.0, 0.5, 1.0, 0.0])
    assert whole["M0_se"] == approx(scores.std(ddof=1) / 2)
    assert whole["H_se"] == approx(np.array([0, 1, 1, 0.0]).std(ddof=1) / 2)


def test_every_level_is_measured_and_parents_pool_their_children(af_stack: Stack) -> None:
    parent = profile(af_stack, REGION.adm1, "analyst")["multidimensional"]
    assert parent["method"] == "alkire_foster"
    assert parent["all"]["M0"] == approx(3 / 8)
    other = profile(af_stack, REGION.adm2[1], "analyst")["multidimensional"]
    assert other["method"] == "place_count" and "not the Alkire-Foster" in other["note"]


def test_small_groups_are_withheld_below_analyst(af_stack: Stack) -> None:
    # four people: every figure rests on fewer than k_min (10) people
    public = profile(af_stack, REGION.adm2[0])["multidimensional"]
    assert public["all"]["withheld"] and public["all"]["M0"] is None
    assert public["all"]["M0_ci_low"] is None and public["all"]["indicators"] is None
    for group in public["groups"]:
        assert group["withheld"]
        assert {k for k, v in group.items() if v is not None} <= {
            "subgroup", "attributes", "withheld", "withheld_reason"}
    with af_stack.client(None) as client:
        response = client.get("/api/v1/subgroups/compounded")
        assert response.status_code == 401
        export = client.get("/api/v1/rankings.csv", params={"level": 2}).text
    row = next(line for line in export.splitlines() if line.startswith(REGION.adm2[0]))
    header = export.splitlines()[0].split(",")
    values = dict(zip(header, row.split(","), strict=False))
    assert values["mpi_method"] == "alkire_foster"
    assert values["mpi_m0"] == "" and values["mpi_m0_ci_low"] == ""


def test_compounded_groups_for_analysts(af_stack: Stack) -> None:
    with af_stack.client("analyst") as client:
        response = client.get("/api/v1/subgroups/compounded", params={"level": 2})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["subgroup"] for item in items} == {"sex=female", "sex=male"}
    female = next(i for i in items if i["subgroup"] == "sex=female")
    # persons 1 and 3 are women; only person 3 is poor (score 4/4): H = 1/2, M0 = 1/2
    assert female["method"] == "alkire_foster" and female["H"] == approx(0.5)
    assert female["M0"] == approx(0.5)
    assert female["code"] == REGION.adm2[0]


BAD = {
    "weight_zero": ("weight", "2", "0", "not positive"),
    "weight_negative": ("weight", "3", "-1", "not positive"),
    "unknown_code": ("locality_code", "2", "ZZ999", "unknown locality code"),
    "binary_not_01": ("af_insured", "2", "2", "not 0 or 1"),
    "duplicate_person": ("person_id", "3", "1", "duplicate person"),
}


def _bad_file(tmp: Path, case: str) -> tuple[Path, str, str, str]:
    village = REGION.adm2[0]
    rows = [[village, "2012", "hh1", "1", "1", "female", "10", "5", "1", "0"],
            [village, "2012", "hh1", "2", "1", "male", "14", "13", "4", "1"]]
    header = ["locality_code", "period", "household_id", "person_id", "weight", "sex",
              "af_income", "af_schooling", "af_health", "af_insured"]
    if case == "undefined_indicator":
        header.append("not_an_indicator")
        rows = [r + ["1"] for r in rows]
        field, row_number, problem = "not_an_indicator", None, "not a defined indicator"
    else:
        field, row_number, value, problem = BAD[case]
        index = int(row_number) - 2
        rows[index][header.index(field)] = value
    path = write_text(tmp / f"{case}.csv", ",".join(header) + "\n" + "\n".join(
        ",".join(r) for r in rows) + "\n")
    return path, field, row_number or "", problem


CASES = [*BAD, "undefined_indicator"]


@pytest.mark.parametrize("case", CASES)
def test_bad_microdata_is_refused_over_http(af_stack: Stack, tmp_path: Path, case: str) -> None:
    path, field, row, problem = _bad_file(tmp_path, case)
    before = snapshot(af_stack)
    with af_stack.client("uploader") as client:
        response = upload(client, "households", path)
    body = response.json()
    assert response.status_code == 422, body
    details = body["details"] if isinstance(body["details"], list) else body["details"]["errors"]
    hit = [d for d in details if d.get("field") == field and problem in d["problem"]]
    assert hit, details
    if row:
        assert any(str(d.get("row")) == row for d in hit)
    assert_nothing_left(af_stack, before)


@pytest.mark.parametrize("case", ["weight_zero", "unknown_code", "undefined_indicator",
                                  "binary_not_01", "duplicate_person"])
def test_bad_microdata_is_refused_by_the_cli(af_stack: Stack, tmp_path: Path, case: str) -> None:
    path, field, row, problem = _bad_file(tmp_path, case)
    before = snapshot(af_stack)
    result = run_cli(af_stack, "households", path)
    assert result.returncode != 0
    assert field in result.stderr and problem in result.stderr, result.stderr
    if row:
        assert f"row {row}" in result.stderr
    assert_nothing_left(af_stack, before)


def test_a_good_file_loads_over_http_and_replaces_its_round(af_stack: Stack,
                                                             tmp_path: Path) -> None:
    path, *_ = _bad_file(tmp_path, "weight_zero")
    good = write_text(tmp_path / "good.csv", path.read_text().replace(",0,female", ",1,female")
                      .replace(",2,0,", ",2,1,"))
    with af_stack.client("uploader") as client:
        for _ in range(2):
            response = upload(client, "households", good)
            assert response.status_code in (200, 201), response.text
    assert af_stack.scalar("SELECT count(*) FROM household_records WHERE period = '2012'") == 2
