"""Every command of docs/own-country.md's table of shared real files, run as written.

The table lists, for each file of ../shared/data, the one `riskatlas ingest` command that
loads it. This test reads the table, replaces `$D` with the shared data folder, and runs
each command through the real CLI (in-process, with Typer's runner), one database per
country set, in the table's order (boundaries before what refers to them). Skipped when the
shared data is absent.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stack_helpers import REPO, Stack, cli_env
from typer.testing import CliRunner

from api.cli import app
from geo.db import build_engine
from geo.migrate import upgrade
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.realdata
GUIDE = REPO / "docs" / "own-country.md"
ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| `(?P<command>riskatlas [^`]+)` \| (?P<result>.+) \|$")


def guide_commands() -> list[tuple[str, str, str]]:
    """Return (file, command, result) of every row of the guide's real-files table."""
    rows = []
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows.append((match["file"], match["command"], match["result"]))
    return rows


def country_of(file: str) -> str:
    """Return which database a file loads into: CAR and the WorldPop raster share one."""
    first = file.split("/")[0]
    if first == "africa":
        return "central_african_republic"
    return "jakarta" if file.startswith("indonesia/jakarta") else first


@pytest.fixture(scope="module")
def databases(new_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Callable[[str], Stack]]:
    """Return a factory of one migrated database per country set."""
    made: dict[str, Stack] = {}

    def get(country: str) -> Stack:
        if country not in made:
            url = new_database(f"riskatlas_guide_{country[:20]}")
            upgrade(url)
            settings = Settings(database=DatabaseSettings(url=url), storage=StorageSettings(
                data_dir=tmp_path_factory.mktemp(f"guide-{country}")))
            made[country] = Stack(url, settings, build_engine(url, settings), "", "", "")
        return made[country]

    yield get
    for stack in made.values():
        stack.engine.dispose()


def test_the_guide_lists_every_shared_data_file() -> None:
    listed = {file for file, _, _ in guide_commands()}
    text = GUIDE.read_text(encoding="utf-8")
    if not SHARED_DATA.exists():
        pytest.skip("shared data absent")
    data_files = {str(p.relative_to(SHARED_DATA)) for p in SHARED_DATA.rglob("*")
                  if p.is_file() and p.suffix.lower() in (
                      ".geojson", ".json", ".csv", ".tif", ".fgb", ".shp", ".asc")}
    for file in sorted(data_files):
        explained = Path(file).name in text or (
            "original_ibf" in file and "original_ibf/*.json" in text)
        assert file in listed or explained, f"{file} is neither loaded nor explained"


@pytest.mark.parametrize(("file", "command", "result"), guide_commands(),
                         ids=[row[0] for row in guide_commands()])
def test_guide_command_loads_its_file(databases: Callable[[str], Stack], file: str,
                                      command: str, result: str) -> None:
    if not (SHARED_DATA / file).exists():
        pytest.skip(f"shared data not present: {file}")
    stack = databases(country_of(file))
    argv = shlex.split(command.replace("$D", str(SHARED_DATA)))[1:]
    outcome = CliRunner().invoke(app, argv, env=cli_env(stack), catch_exceptions=False)
    assert outcome.exit_code == 0, (command, outcome.output)
    assert "loaded " in outcome.output
    number = re.match(r"^([\d,]+) ", result)
    if number and "replaces" not in result:
        assert f'"rows": {int(number[1].replace(",", ""))}' in outcome.output, outcome.output


def test_malformed_originals_are_refused_naming_features(databases: Callable[[str], Stack]
                                                         ) -> None:
    path = SHARED_DATA / "rwanda" / "admin" / "original_ibf" / "RWA_adm1.json"
    if not path.exists():
        pytest.skip("shared data absent")
    stack = databases("rwanda_originals")
    outcome = CliRunner().invoke(app, ["ingest", "localities", str(path)], env=cli_env(stack),
                                 catch_exceptions=False)
    assert outcome.exit_code == 1
    assert "feature" in outcome.output and "malformed" in outcome.output
