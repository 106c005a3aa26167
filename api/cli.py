"""The `riskatlas` command line: serve, database, demo, ingest, score, keys, backup."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from api.settings import ApiSettings
from geo.db import build_engine, describe_url, embedded_cluster, resolve_database_url
from geo.errors import RiskAtlasError
from geo.settings import Settings

app = typer.Typer(
    help="riskatlas: find who is left behind, where, and why.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Manage the database (the embedded cluster or DATABASE_URL).",
                     no_args_is_help=True)
demo_app = typer.Typer(help="The synthetic demo region.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")

console = Console(stderr=True)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn riskatlas errors into one sentence on stderr and exit status 1, no traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RiskAtlasError as exc:
            console.print(f"riskatlas: {exc.message}", style="bold red", highlight=False,
                          soft_wrap=True)
            for detail in _detail_lines(exc.details):
                console.print(f"  - {detail}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _detail_lines(details: Any) -> list[str]:
    if isinstance(details, list):
        return [", ".join(f"{k}: {v}" for k, v in d.items()) if isinstance(d, dict) else str(d)
                for d in details[:20]]
    return []


@contextmanager
def database(settings: Settings) -> Iterator[Any]:
    """Yield an engine on the configured database (starting the embedded one if needed)."""
    from geo.ingest.load import remove_orphan_rasters
    from geo.jobs import recover_interrupted_jobs

    engine = build_engine(resolve_database_url(settings), settings)
    try:
        if _migrated(engine):
            # Whatever a killed run left half-done is cleaned up at the next start.
            recover_interrupted_jobs(engine, settings.storage.staging_dir)
            remove_orphan_rasters(engine, settings.storage.raster_dir)
        yield engine
    finally:
        engine.dispose()


def checked_database_url(settings: Settings) -> str:
    """Return the database URL after checking that it answers and has PostGIS."""
    from geo.db import check_database

    url = resolve_database_url(settings)
    with database(settings) as engine:
        check_database(engine)
    return url


def _migrated(engine: Any) -> bool:
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    try:
        return inspect(engine).has_table("jobs")
    except OperationalError:
        return False


# -- serve ------------------------------------------------------------------------------
@app.command()
@friendly_errors
def serve(
    host: str = typer.Option(None, help="Interface to listen on [default: 127.0.0.1]"),
    port: int = typer.Option(None, help="Port to listen on [default: 8000]"),
    migrate: bool = typer.Option(True, help="Apply pending migrations before serving"),
    workers: int = typer.Option(1, min=1, max=64,
                                help="Worker processes (one per core serves most traffic)"),
) -> None:
    """Serve the API and the map; starts the embedded database when DATABASE_URL is unset."""
    import uvicorn

    from api.main import create_app
    from geo.migrate import upgrade

    settings = Settings()
    api_settings = ApiSettings(**{k: v for k, v in {"host": host, "port": port}.items() if v})
    _check_port_free(api_settings.host, api_settings.port)
    url = checked_database_url(settings)
    if migrate:
        upgrade(url)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out.print(f"riskatlas is serving on http://{api_settings.host}:{api_settings.port}/ "
              f"(database {describe_url(url)}); press Ctrl+C to stop", highlight=False)
    if workers == 1:
        uvicorn.run(create_app(settings, api_settings), host=api_settings.host,
                    port=api_settings.port, log_level="info")
        return
    # Worker processes build their own app from the environment: point them at the same
    # database (the embedded cluster started above, or DATABASE_URL).
    os.environ["DATABASE_URL"] = url
    uvicorn.run("api.main:create_app", factory=True, workers=workers, host=api_settings.host,
                port=api_settings.port, log_level="info")


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: connections of a crashed server linger in TIME_WAIT for ~60 s,
        # and without SO_REUSEADDR this probe would call the port busy all that time.
        # A port another program listens on is still refused.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            from geo.errors import SetupError

            in_use = exc.errno == errno.EADDRINUSE
            reason = "is already in use" if in_use else f"cannot be used ({exc.strerror})"
            raise SetupError(
                f"port {port} on {host} {reason}; stop the other program or pass --port"
            ) from None


# -- db ---------------------------------------------------------------------------------
@db_app.command("start")
@friendly_errors
def db_start() -> None:
    """Start the embedded PostgreSQL + PostGIS cluster in the data directory."""
    settings = Settings()
    if settings.database.url:
        raise RiskAtlasError("DATABASE_URL is set, so there is no embedded database to start")
    cluster = embedded_cluster(settings)
    status = cluster.status()
    if status.running:
        raise RiskAtlasError(
            f"the embedded database is already running (pid {status.pid}) in {cluster.cluster_dir}"
        )
    url = cluster.ensure_running()
    out.print(f"embedded database running at {describe_url(url)} in {cluster.cluster_dir}",
              highlight=False)


@db_app.command("stop")
@friendly_errors
def db_stop() -> None:
    """Stop the embedded cluster."""
    cluster = embedded_cluster(Settings())
    stopped = cluster.stop()
    out.print("embedded database " + ("stopped" if stopped else "was not running"))


@db_app.command("status")
@friendly_errors
def db_status() -> None:
    """Say where the database is, whether it runs, and what it holds."""
    from geo.status import database_status

    settings = Settings()
    if not settings.database.url:
        status = embedded_cluster(settings).status()
        if not status.running:
            state = "stopped" if status.initialised else "not created yet"
            out.print(f"embedded database: {state}")
            raise typer.Exit(3)
    with database(settings) as engine:
        facts = database_status(engine)
    out.print(f"database {describe_url(str(engine.url))}: up", highlight=False)
    for key, value in facts.items():
        out.print(f"  {key}: {value}", highlight=False)


@db_app.command("upgrade")
@friendly_errors
def db_upgrade(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from geo.migrate import current, upgrade

    url = checked_database_url(Settings())
    upgrade(url, revision)
    out.print(f"database schema at revision {current(url)}")


@db_app.command("downgrade")
@friendly_errors
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base")) -> None:
    """Revert migrations down to REVISION."""
    from geo.migrate import current, downgrade

    url = checked_database_url(Settings())
    downgrade(url, revision)
    out.print(f"database schema at revision {current(url) or 'base'}")


# -- ingest and check ---------------------------------------------------------------------
KINDS_HELP = (
    "localities, population, hazard, events, institutions, indicators, observations, "
    "priorities, households"
)


def _roles_help() -> str:
    from geo.ingest.options import ROLES

    return "; ".join(f"{kind}: {', '.join(roles)}" for kind, roles in ROLES.items() if roles)


FILE_ARGUMENT = typer.Argument(
    ..., exists=True, dir_okay=False, readable=True,
    help="GeoTIFF, zip, GeoJSON (or a JSON array), GeoPackage, FlatGeobuf, CSV, .xlsx or YAML")
NAME_OPTION = typer.Option(None, help="Layer name of a hazard or population raster (required "
                           "for hazard; a re-upload under the same name becomes a new version)")
LAYER_NAME_OPTION = typer.Option(
    None, "--layer-name", help="Name of the layer this upload makes (events, institutions; "
    "default: the file name without extension). A new upload under the same name replaces "
    "the layer whole")
HAZARD_KIND_OPTION = typer.Option(None, "--hazard-kind", help="flood, landslide, drought, heat, "
                                  "cyclone, earthquake, climate or other: decides which "
                                  "dimension the raster feeds")
LAYER_OPTION = typer.Option(None, "--layer", help="Layer of a GeoPackage that holds several")
SHEET_OPTION = typer.Option(None, help="Sheet of an .xlsx workbook, by name or number "
                            "[default: the first]")
FIELD_OPTION = typer.Option(
    [], "--field", "-f", help="ROLE=COLUMN: which column plays which role when the usual "
    "names are not used (repeatable). Roles per kind: " + _roles_help())
DECIMAL_OPTION = typer.Option(None, help="Decimal mark of a CSV: . or , [default: , when the "
                              "delimiter is ;]")
DATE_FORMAT_OPTION = typer.Option(None, "--date-format",
                                  help="Format of the dates, e.g. %d/%m/%y or %Y-%m-%d")
SKIP_OPTION = typer.Option(False, "--skip-unknown", help="Load the rows whose locality code is "
                           "known and list the others, instead of refusing the file")


def _ingest_options(**flags: Any) -> dict[str, Any]:
    """Return the options dict both `ingest` and `check` send to the one ingest path."""
    from geo.ingest.options import field_pairs, option_value

    options: dict[str, Any] = {
        "name": flags["name"], "layer_name": flags["layer_name"], "kind": flags["hazard_kind"],
        "unit": flags["unit"], "polarity": flags["polarity"], "threshold": flags["threshold"],
        "level": flags["level"], "source_layer": flags["layer"], "sheet": flags["sheet"],
        "year": flags["year"], "decimal": flags["decimal"], "date_format": flags["date_format"],
        "value_kind": "density" if flags["density"] else None,
        "skip_unknown": True if flags["skip_unknown"] else None,
        "fields": field_pairs(flags["field"]) or None,
    }
    for item in flags["option"]:
        key, sep, value = item.partition("=")
        if not sep:
            raise RiskAtlasError(f"--option {item!r} must look like KEY=VALUE")
        options[key.strip()] = option_value(value)
    return {k: v for k, v in options.items() if v is not None}


# The parts a .shp or .asc needs beside it; the CLI zips them so one command loads it.
SIDECARS = {".shp": (".shx", ".dbf", ".prj", ".cpg"), ".asc": (".prj",)}


@contextmanager
def _with_sidecars(file: Path) -> Iterator[tuple[Path, str]]:
    """Yield the file to upload and its name: a .shp/.asc zipped with its sidecar files."""
    import tempfile
    import zipfile

    suffix = file.suffix.lower()
    if suffix not in SIDECARS:
        yield file.resolve(), file.name
        return
    parts = [file] + [p for p in (file.with_suffix(s) for s in SIDECARS[suffix]) if p.exists()]
    with tempfile.TemporaryDirectory(prefix="riskatlas-") as scratch:
        bundle = Path(scratch) / f"{file.stem}.zip"
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in parts:
                archive.write(part, part.name)
        yield bundle, file.name


@app.command()
@friendly_errors
def ingest(
    kind: str = typer.Argument(..., help=f"What the file holds: {KINDS_HELP}"),
    file: Path = FILE_ARGUMENT,
    name: str = NAME_OPTION,
    layer_name: str = LAYER_NAME_OPTION,
    hazard_kind: str = HAZARD_KIND_OPTION,
    unit: str = typer.Option(None, help="Unit of the raster values, e.g. m"),
    polarity: str = typer.Option(None, help="higher_is_worse (default) or higher_is_better"),
    threshold: float = typer.Option(None, help="Hazard value from which a cell is exposed"),
    level: int = typer.Option(None, help="Admin level of a boundary file (else inferred)"),
    layer: str = LAYER_OPTION,
    sheet: str = SHEET_OPTION,
    field: list[str] = FIELD_OPTION,
    decimal: str = DECIMAL_OPTION,
    date_format: str = DATE_FORMAT_OPTION,
    skip_unknown: bool = SKIP_OPTION,
    density: bool = typer.Option(False, help="Population raster holds people per km²"),
    year: int = typer.Option(None, help="Reference year of a population table"),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Any other option as KEY=VALUE (VALUE may be JSON)"),
) -> None:
    """Validate FILE and load it as KIND, all or nothing, with a progress bar."""
    import json

    from geo.ingest.service import run_ingest_job, start_ingest_job

    options = _ingest_options(**locals())
    settings = Settings()
    with database(settings) as engine, _with_sidecars(file) as (path, shown_name):
        job_id = start_ingest_job(engine, kind, options, shown_name)
        with progress_display(f"{kind} {file.name}") as show:
            result = run_ingest_job(engine, settings, job_id, kind, path, shown_name,
                                    options, [show])
    summary = {k: v for k, v in result.items()
               if k not in ("statistics", "warnings", "columns", "skipped")}
    # soft_wrap: the summary stays one line of JSON however narrow the terminal or pipe.
    out.print(f"loaded {file.name} as {kind}: {json.dumps(summary, ensure_ascii=False)}",
              highlight=False, soft_wrap=True)
    for warning in result.get("warnings") or []:
        out.print(f"  note: {warning}", highlight=False, soft_wrap=True)
    for skipped in result.get("skipped") or []:
        out.print(f"  skipped: {_detail_lines([skipped])[0]}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def check(
    kind: str = typer.Argument(..., help=f"What the file holds: {KINDS_HELP}"),
    file: Path = FILE_ARGUMENT,
    name: str = NAME_OPTION,
    layer_name: str = LAYER_NAME_OPTION,
    hazard_kind: str = HAZARD_KIND_OPTION,
    unit: str = typer.Option(None, help="Unit of the raster values, e.g. m"),
    polarity: str = typer.Option(None, help="higher_is_worse (default) or higher_is_better"),
    threshold: float = typer.Option(None, help="Hazard value from which a cell is exposed"),
    level: int = typer.Option(None, help="Admin level of a boundary file (else inferred)"),
    layer: str = LAYER_OPTION,
    sheet: str = SHEET_OPTION,
    field: list[str] = FIELD_OPTION,
    decimal: str = DECIMAL_OPTION,
    date_format: str = DATE_FORMAT_OPTION,
    skip_unknown: bool = SKIP_OPTION,
    density: bool = typer.Option(False, help="Population raster holds people per km²"),
    year: int = typer.Option(None, help="Reference year of a population table"),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Any other option as KEY=VALUE (VALUE may be JSON)"),
) -> None:
    """Dry run: say what loading FILE as KIND would do and every problem, writing nothing.

    Takes the same options as `ingest`. Exit status 0 when the file would load, 1 if not.
    """
    import json

    from geo.ingest.service import check_ingest

    options = _ingest_options(**locals())
    settings = Settings()
    with database(settings) as engine, _with_sidecars(file) as (path, shown_name):
        report = check_ingest(engine, settings, kind, path, shown_name, options)
    would = report.get("would_load") or {}
    if report["ok"]:
        summary = {k: v for k, v in would.items()
                   if k not in ("statistics", "warnings", "columns", "skipped")}
        out.print(f"{file.name} would load as {kind}: {json.dumps(summary, ensure_ascii=False)}",
                  highlight=False, soft_wrap=True)
    else:
        out.print(f"{file.name} would be refused: {report['message']}", highlight=False,
                  soft_wrap=True)
        for line in _detail_lines(report["problems"]):
            out.print(f"  problem: {line}", highlight=False, soft_wrap=True)
    columns = would.get("columns") or {}
    for role, column in (columns.get("recognised") or {}).items():
        out.print(f"  column {column!r} read as {role}", highlight=False, soft_wrap=True)
    if columns.get("other"):
        out.print(f"  other columns (kept as attributes or ignored): "
                  f"{', '.join(columns['other'])}", highlight=False, soft_wrap=True)
    for warning in would.get("warnings") or []:
        out.print(f"  note: {warning}", highlight=False, soft_wrap=True)
    for skipped in would.get("skipped") or []:
        out.print(f"  would skip: {_detail_lines([skipped])[0]}", highlight=False,
                  soft_wrap=True)
    if not report["ok"]:
        raise typer.Exit(1)


# -- layers -----------------------------------------------------------------------------
layers_app = typer.Typer(help="Named layers: hazard and population rasters, event layers, "
                         "institution inventories.", no_args_is_help=True)
app.add_typer(layers_app, name="layers")


@layers_app.command("list")
@friendly_errors
def layers_list() -> None:
    """List every named layer with its kind, version, rows and source file."""
    from geo.ingest.layers import list_named_layers

    with database(Settings()) as engine:
        layers = list_named_layers(engine)
    if not layers:
        out.print("no layers loaded yet")
    for layer in layers:
        out.print(f"{layer['kind']:<13} {layer['name']}  (version {layer['version']}, "
                  f"{layer['rows']} {layer['unit']}, from {layer['source'] or '?'})",
                  highlight=False, soft_wrap=True)


@layers_app.command("delete")
@friendly_errors
def layers_delete(
    kind: str = typer.Argument(..., help="hazard, population, events or institutions"),
    name: str = typer.Argument(..., help="The layer's name (see `riskatlas layers list`)"),
) -> None:
    """Delete a named layer and everything it holds (refused while a score run is going)."""
    from geo.ingest.layers import delete_named_layer

    settings = Settings()
    with database(settings) as engine:
        deleted = delete_named_layer(engine, settings, kind, name)
    out.print(f"deleted the {kind} layer {name!r} ({deleted['rows']} {deleted['unit']})",
              highlight=False, soft_wrap=True)


@contextmanager
def progress_display(label: str) -> Iterator[Callable[[float, str], None]]:
    """Yield a progress callback: a live bar on a terminal, plain stderr lines otherwise."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    if not console.is_terminal:
        # A live bar draws nothing when stderr is a pipe or a log file, so say each new
        # step, and every tenth of the way, on a line of its own.
        shown: dict[str, Any] = {"message": "", "tenth": -1}

        def say(fraction: float, message: str) -> None:
            tenth = int(fraction * 10)
            if message != shown["message"] or tenth > shown["tenth"]:
                shown.update(message=message, tenth=tenth)
                console.print(f"{label}: {message} ({fraction:.0%})", highlight=False,
                              soft_wrap=True)

        yield say
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=1.0)

        def show(fraction: float, message: str) -> None:
            bar.update(task, completed=fraction, description=f"{label}: {message}")

        yield show


# -- score ------------------------------------------------------------------------------
@app.command()
@friendly_errors
def score(
    window_end: str = typer.Option(None, help="Last day of the conflict window (ISO date) "
                                   "[default: the newest event]"),
    window_months: int = typer.Option(12, help="Length of the conflict window in months"),
    band_km: float = typer.Option(25.0, help="Spill-over band around a locality, km"),
    scheduler: str = typer.Option(None, envvar="RISKATLAS_DASK_SCHEDULER",
                                  help="Dask scheduler address for the exposure step "
                                  "[default: a local process pool]"),
) -> None:
    """Compute a full score run over the current data (every level), with a progress bar."""
    import json

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from geo.runs.lifecycle import run_scores

    parameters: dict[str, Any] = {"window_months": window_months, "band_km": band_km}
    if window_end:
        parameters["window_end"] = window_end
    settings = Settings()
    with database(settings) as engine, _executor(scheduler) as executor:
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("score run", total=1.0)

            def show(fraction: float, message: str) -> None:
                bar.update(task, completed=fraction, description=f"score run: {message}")

            summary = run_scores(engine, settings, executor=executor, listeners=[show],
                                 parameters=parameters)
    # soft_wrap: long lines (the explanations) must not be broken inside JSON strings
    out.print(json.dumps(summary, indent=2, ensure_ascii=False), highlight=False,
              soft_wrap=True)
    # what each level's scores rest on, and what could not be scored, in words
    for line in summary.get("explained", []):
        console.print(line, highlight=False, soft_wrap=True)


@contextmanager
def _executor(scheduler: str | None) -> Iterator[Any]:
    if not scheduler:
        yield None
        return
    from dask.distributed import Client

    with Client(scheduler) as client:
        yield client.get_executor()


# -- keys -------------------------------------------------------------------------------
keys_app = typer.Typer(help="API keys and roles.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@friendly_errors
def keys_create(
    role: str = typer.Option(..., help="public, analyst, uploader or admin"),
    name: str = typer.Option(..., help="Who or what the key is for"),
    expires: str = typer.Option(None, help="When it stops working: 30d, 12h, 2w or an ISO "
                                "date such as 2026-12-31 [default: never]"),
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from geo.keys import create_key, parse_expiry

    expires_at = parse_expiry(expires) if expires else None
    with database(Settings()) as engine:
        key = create_key(engine, name, role, expires_at)
    out.print(key.secret)
    until = f", valid until {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""
    console.print(f"created a {key.role} key for {key.name} (prefix {key.prefix}{until}); "
                  "keep it now, it is not shown again", highlight=False)


@keys_app.command("list")
@friendly_errors
def keys_list() -> None:
    """List every key: prefix, role, name, state, expiry and last use (never the secret)."""
    from rich.table import Table

    from geo.keys import list_keys

    with database(Settings()) as engine:
        keys = list_keys(engine)
    if not keys:
        out.print("no API keys yet; create one with `riskatlas keys create`")
        return
    table = Table("prefix", "role", "name", "state", "created", "expires", "last used",
                  box=None, header_style="bold")

    def when(moment: Any) -> str:
        return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"

    for key in keys:
        table.add_row(key.prefix, key.role, key.name, key.state, when(key.created_at),
                      when(key.expires_at) if key.expires_at else "never",
                      when(key.last_used_at) if key.last_used_at else "never")
    out.print(table)


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(
    prefix: str = typer.Argument(..., help="The key's prefix as `keys list` shows it"),
) -> None:
    """Revoke a key: every request carrying it is refused from now on."""
    from geo.keys import revoke_key

    with database(Settings()) as engine:
        key = revoke_key(engine, prefix)
    out.print(f"revoked the {key.role} key {key.prefix} ({key.name}) at "
              f"{key.revoked_at:%Y-%m-%d %H:%M:%S} UTC", highlight=False)


# -- backup -----------------------------------------------------------------------------
backup_app = typer.Typer(help="Back up and restore the database and the raster files.",
                         no_args_is_help=True)
app.add_typer(backup_app, name="backup")


@backup_app.command("create")
@friendly_errors
def backup_create(
    path: Path = typer.Argument(..., dir_okay=False, help="Archive to write, e.g. "
                                "riskatlas-2026-11-26.tar (must not exist yet)"),
) -> None:
    """Write one archive: a consistent pg_dump, every raster file, a manifest of checksums."""
    import json

    from geo.backup import create_backup

    settings = Settings()
    url = resolve_database_url(settings)
    with progress_display(f"backup {path.name}") as show:
        summary = create_backup(url, settings, path, show)
    out.print(f"backup written: {json.dumps(summary, ensure_ascii=False)}", highlight=False,
              soft_wrap=True)


@backup_app.command("restore")
@friendly_errors
def backup_restore(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="Archive made by `riskatlas backup create`"),
) -> None:
    """Restore an archive into an empty data directory (and an empty DATABASE_URL, if set)."""
    import json

    from geo.backup import restore_backup

    settings = Settings()
    with progress_display(f"restore {path.name}") as show:
        summary = restore_backup(path, settings, show)
    out.print(f"backup restored: {json.dumps(summary, ensure_ascii=False)}", highlight=False,
              soft_wrap=True)


# -- demo -------------------------------------------------------------------------------
@demo_app.command("load")
@friendly_errors
def demo_load(
    seed: int = typer.Option(20261125, help="Seed of the generator (same seed, same region)"),
) -> None:
    """Generate the demo region, load it through the normal ingestion paths, and score it."""
    from geo.demo.load import load_demo
    from geo.migrate import upgrade
    from geo.runs.lifecycle import run_scores
    from geo.runs.lookup import latest_run_id

    settings = Settings()
    upgrade(checked_database_url(settings))
    with database(settings) as engine:
        with progress_display("demo") as show:
            summary = load_demo(engine, settings, seed=seed, progress=show)
        out.print(summary.describe(), highlight=False)
        if latest_run_id(engine) is None:
            with progress_display("score run") as show:
                result = run_scores(engine, settings, listeners=[show])
            out.print(f"scored {result['localities']} localities in run {result['run_id']}; "
                      f"{result['compounded']} in compounded stress", highlight=False)
            for line in result.get("explained", []):
                out.print(f"  {line}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point for `python -m api.cli`."""
    sys.exit(app())


if __name__ == "__main__":
    main()
