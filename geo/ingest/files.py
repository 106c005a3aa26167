"""The door of ingestion: identify an upload by its content and stage it under safe names.

Every upload is copied (or, for a zip, selectively extracted) into a private directory
under `workdir`, under fixed names such as `upload.tif` or `data.shp`. The name the user
gave is kept only for messages: it never becomes a path, and nothing the user wrote
reaches GDAL as a filename, so `/vsicurl/...`, `http://...` or `/etc/passwd` in a name or
a zip entry is inert.

Multi-file formats come as one zip: a shapefile (its .shp/.shx/.dbf[/.prj/.cpg], in any
folder of the zip) or an ESRI ASCII grid with its .prj. A bare `.asc` is accepted too, but
has no CRS and is then refused by `rasters.inspect_raster` with a message saying to zip it
with its .prj.
"""

from __future__ import annotations

import codecs
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import NoReturn

from geo.ingest._problems import fail_one

SNIFF_BYTES = 64 * 1024
COPY_CHUNK = 1024 * 1024
# Small members may compress extremely well without being dangerous; only judge the ratio
# of members big enough to matter.
RATIO_MIN_BYTES = 1024 * 1024


class FileKind(StrEnum):
    """What an upload turned out to be, judged from its content."""

    GEOTIFF = "geotiff"
    ASCII_GRID = "ascii_grid"
    SHAPEFILE = "shapefile"
    GEOPACKAGE = "geopackage"
    GEOJSON = "geojson"
    FLATGEOBUF = "flatgeobuf"
    CSV = "csv"
    YAML = "yaml"
    XLSX = "xlsx"


RASTER_KINDS = frozenset({FileKind.GEOTIFF, FileKind.ASCII_GRID})
VECTOR_KINDS = frozenset(
    {FileKind.SHAPEFILE, FileKind.GEOPACKAGE, FileKind.GEOJSON, FileKind.FLATGEOBUF}
)
TABLE_KINDS = frozenset({FileKind.CSV, FileKind.YAML, FileKind.XLSX})

# The fixed name each kind is staged under; GDAL sees only these.
STAGED_NAMES: dict[FileKind, str] = {
    FileKind.GEOTIFF: "upload.tif",
    FileKind.ASCII_GRID: "data.asc",
    FileKind.SHAPEFILE: "data.shp",
    FileKind.GEOPACKAGE: "upload.gpkg",
    FileKind.GEOJSON: "upload.geojson",
    FileKind.FLATGEOBUF: "upload.fgb",
    FileKind.CSV: "upload.csv",
    FileKind.YAML: "upload.yaml",
    FileKind.XLSX: "upload.xlsx",
}
# Members of a zip that may hold a single dataset on their own (zipped GeoJSON, ...).
SINGLE_FILE_SUFFIXES = (
    ".tif", ".tiff", ".gpkg", ".geojson", ".json", ".fgb", ".csv", ".xlsx", ".yaml", ".yml",
)
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
ASCII_GRID_KEYS = ("ncols", "nrows", "xllcorner", "xllcenter", "yllcorner", "yllcenter")


@dataclass(frozen=True)
class ZipLimits:
    """Limits that stop zip bombs and hostile archives before and during extraction."""

    max_entries: int = 1000
    max_uncompressed_bytes: int = 4 * 1024**3
    # Real ESRI ASCII grids compress well (the Jakarta population grid: 136×); deflate tops
    # out near 1,032×, so 250× still stops single-layer bombs, and the total-size cap
    # (checked from headers and enforced while extracting) is the hard limit.
    max_ratio: float = 250.0


@dataclass(frozen=True)
class UploadedFile:
    """An upload staged in its own directory under fixed names; remove it with `cleanup`."""

    original_name: str
    kind: FileKind
    path: Path
    directory: Path
    size_bytes: int
    members: tuple[str, ...] = field(default=())

    @property
    def is_raster(self) -> bool:
        """Return True for GeoTIFF and ESRI ASCII grid uploads."""
        return self.kind in RASTER_KINDS

    def cleanup(self) -> None:
        """Remove the staging directory and everything in it."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> UploadedFile:
        """Return the upload itself; leaving the block removes its staging directory."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Remove the staging directory, whatever happened inside the block."""
        self.cleanup()


def open_upload(
    path: Path,
    original_name: str,
    *,
    max_bytes: int,
    workdir: Path,
    zip_limits: ZipLimits | None = None,
) -> UploadedFile:
    """Return the upload at `path` identified by content and staged inside `workdir`."""
    display_name = _display_name(original_name)
    size = path.stat().st_size
    if size > max_bytes:
        fail_one(
            display_name,
            f"the upload is {size:,} bytes, over the limit of {max_bytes:,} bytes",
            too_large=True,
        )
    if size == 0 or not _has_content(path):
        fail_one(display_name, "the file is empty")
    head = _read_head(path)
    workdir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir))
    try:
        if _is_zip(head) and _is_xlsx(path):
            staged = directory / STAGED_NAMES[FileKind.XLSX]
            shutil.copyfile(path, staged)
            return UploadedFile(display_name, FileKind.XLSX, staged, directory, size)
        if _is_zip(head):
            limits = zip_limits or ZipLimits()
            return _stage_zip(path, display_name, directory, size, limits)
        kind = sniff_kind(head, display_name)
        staged = directory / STAGED_NAMES[kind]
        shutil.copyfile(path, staged)
        return UploadedFile(display_name, kind, staged, directory, size)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def quick_check(path: Path, original_name: str) -> None:
    """Raise at once for an empty or plainly non-geo file; zips are checked fully in the job."""
    display_name = _display_name(original_name)
    if not _has_content(path):
        fail_one(display_name, "the file is empty")
    head = _read_head(path)
    if not _is_zip(head):
        sniff_kind(head, display_name)


def sniff_kind(head: bytes, display_name: str) -> FileKind:
    """Return the kind of a (non-zip) file from its first bytes, or raise 'not a geo file'."""
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return FileKind.GEOTIFF
    if head.startswith(b"SQLite format 3\x00"):
        return FileKind.GEOPACKAGE
    if head.startswith(b"fgb\x03"):
        return FileKind.FLATGEOBUF
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        fail_one(display_name, "an old Excel .xls workbook: save it as .xlsx or CSV")
    text = _decode_head(head)
    if text is None and _is_legacy_text(head):
        fail_one(display_name, "the file is text but not UTF-8 encoded; save it as UTF-8")
    if text is None:
        _not_geo(display_name, "its content is binary and of no supported format")
    stripped = text.lstrip()
    first_word = stripped.split(maxsplit=1)[0].lower() if stripped else ""
    if first_word in ASCII_GRID_KEYS:
        return FileKind.ASCII_GRID
    if stripped.startswith(("{", "[")):
        return FileKind.GEOJSON
    if stripped.startswith("<"):
        _not_geo(display_name, "it is XML/HTML (GDAL VRT, KML, GML and web pages are refused)")
    if _looks_like_yaml(stripped, display_name):
        return FileKind.YAML
    first_line = stripped.splitlines()[0] if stripped else ""
    if any(delimiter in first_line for delimiter in (",", ";", "\t")):
        return FileKind.CSV
    _not_geo(display_name, "it is text but neither CSV, GeoJSON, YAML nor an ESRI ASCII grid")


def _display_name(original_name: str) -> str:
    """Return the user's filename trimmed for messages (never used as a path)."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in original_name)
    return printable[:200] or "upload"


def _has_content(path: Path) -> bool:
    """Return False if the file holds only whitespace (and a BOM), reading at most 1 MB."""
    with path.open("rb") as handle:
        chunk = handle.read(COPY_CHUNK)
    return bool(chunk.removeprefix(codecs.BOM_UTF8).strip()) or len(chunk) == COPY_CHUNK


def _read_head(path: Path) -> bytes:
    """Return the first bytes of a file, enough to identify it."""
    with path.open("rb") as handle:
        return handle.read(SNIFF_BYTES)


def _is_xlsx(path: Path) -> bool:
    """Return True for an Office Open XML workbook (a zip holding xl/workbook.xml)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist()[:1000])
    except (zipfile.BadZipFile, OSError):
        return False
    return "[Content_Types].xml" in names and "xl/workbook.xml" in names


def _is_zip(head: bytes) -> bool:
    """Return True when the bytes start a zip archive (including an empty one)."""
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _decode_head(head: bytes) -> str | None:
    """Return the head decoded as UTF-8 (BOM dropped), or None if it is not UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        # final=False: the 64 KB cut may fall inside a multi-byte character.
        text = decoder.decode(head, final=False)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _is_legacy_text(head: bytes) -> bool:
    """Return True for text in a legacy 8-bit encoding (Latin-1/Windows-1252), not binary."""
    if b"\x00" in head:
        return False
    text = head.decode("latin-1")
    # Binary formats are full of control bytes; text in an 8-bit encoding has almost none.
    controls = sum(1 for ch in text if not ch.isprintable() and ch not in "\r\n\t")
    return controls <= max(2, len(text) // 100)


def _looks_like_yaml(text: str, display_name: str) -> bool:
    """Return True for YAML: a .yaml/.yml name or a first line like `key:` / `- `."""
    if display_name.lower().endswith((".yaml", ".yml")):
        return True
    first_line = text.splitlines()[0] if text else ""
    return first_line.startswith(("---", "- ")) or bool(re.match(r"^[\w-]+:(\s|$)", first_line))


def _not_geo(display_name: str, reason: str) -> NoReturn:
    """Raise the 'not a geo file' error naming the file and why."""
    fail_one(display_name, f"not a geo file: {reason}")


# --- zip archives ---------------------------------------------------------------------


def _stage_zip(
    path: Path, display_name: str, directory: Path, size: int, limits: ZipLimits
) -> UploadedFile:
    """Return the dataset inside a zip, checked against hostile archives and extracted."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        fail_one(display_name, f"the zip archive is corrupt ({exc})")
    with archive:
        entries = _checked_entries(archive, display_name, limits)
        budget = [limits.max_uncompressed_bytes]
        shp = [e for e in entries if e.filename.lower().endswith(".shp")]
        asc = [e for e in entries if e.filename.lower().endswith(".asc")]
        singles = [e for e in entries if e.filename.lower().endswith(SINGLE_FILE_SUFFIXES)]
        if shp:
            members = _shapefile_members(shp, entries, display_name)
            kind = FileKind.SHAPEFILE
        elif asc:
            members = _ascii_grid_members(asc, entries, display_name)
            kind = FileKind.ASCII_GRID
        elif len(singles) == 1:
            return _stage_single_member(archive, singles[0], display_name, directory, size, budget)
        else:
            found = ", ".join(e.filename for e in entries[:20]) or "nothing"
            fail_one(
                display_name,
                "the zip contains no .shp (and no single raster or vector file); "
                f"found: {found}",
            )
        for suffix, entry in members.items():
            _extract(archive, entry, directory / f"data{suffix}", display_name, budget)
    names = tuple(entry.filename for entry in members.values())
    return UploadedFile(display_name, kind, directory / STAGED_NAMES[kind], directory, size, names)


def _checked_entries(
    archive: zipfile.ZipFile, display_name: str, limits: ZipLimits
) -> list[zipfile.ZipInfo]:
    """Return the zip's file entries worth looking at, after refusing hostile ones."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        fail_one(
            display_name,
            f"the zip has {len(infos):,} entries, more than the limit of {limits.max_entries:,}",
        )
    total = 0
    for info in infos:
        _check_entry(info, display_name, limits)
        total += info.file_size
    if total > limits.max_uncompressed_bytes:
        fail_one(
            display_name,
            f"the zip would expand to {total:,} bytes, over the limit of "
            f"{limits.max_uncompressed_bytes:,} bytes (possible zip bomb)",
            too_large=True,
        )
    return [info for info in infos if _is_wanted(info)]


def _check_entry(info: zipfile.ZipInfo, display_name: str, limits: ZipLimits) -> None:
    """Raise if an entry escapes the archive, is a link, is encrypted or is a bomb."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        fail_one(display_name, "path traversal: the entry name leaves the archive", entry=name)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        fail_one(display_name, "the entry is a symbolic link, which is not allowed", entry=name)
    if info.flag_bits & 0x1:
        fail_one(display_name, "the entry is encrypted", entry=name)
    if info.file_size > RATIO_MIN_BYTES:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            fail_one(
                display_name,
                f"compression ratio {ratio:,.0f}× is over the limit of {limits.max_ratio:,.0f}× "
                "(possible zip bomb)",
                too_large=True,
                entry=name,
            )


def _is_wanted(info: zipfile.ZipInfo) -> bool:
    """Return False for directories and macOS/hidden clutter that zips often carry."""
    parts = PurePosixPath(info.filename).parts
    if info.is_dir() or not parts:
        return False
    return parts[0] != "__MACOSX" and not parts[-1].startswith(".")


def _stem(entry: zipfile.ZipInfo) -> str:
    """Return the entry name without its extension, lower-cased, for sibling matching."""
    return entry.filename.rsplit(".", 1)[0].lower()


def _siblings(main: zipfile.ZipInfo, entries: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Return the entries sharing `main`'s folder and stem, keyed by lower-case suffix."""
    stem = _stem(main)
    return {
        "." + e.filename.rsplit(".", 1)[-1].lower(): e
        for e in entries
        if "." in e.filename and _stem(e) == stem
    }


def _shapefile_members(
    shp: list[zipfile.ZipInfo], entries: list[zipfile.ZipInfo], display_name: str
) -> dict[str, zipfile.ZipInfo]:
    """Return the parts of the zip's only shapefile keyed by suffix; raise if incomplete."""
    if len(shp) > 1:
        names = ", ".join(e.filename for e in shp[:10])
        fail_one(display_name, f"the zip holds {len(shp)} shapefiles ({names}); upload one")
    siblings = _siblings(shp[0], entries)
    missing = [suffix for suffix in (".shx", ".dbf") if suffix not in siblings]
    if missing:
        fail_one(
            display_name,
            f"the shapefile lacks its {' and '.join(missing)} part",
            entry=shp[0].filename,
        )
    return {suffix: siblings[suffix] for suffix in SHAPEFILE_PARTS if suffix in siblings}


def _ascii_grid_members(
    asc: list[zipfile.ZipInfo], entries: list[zipfile.ZipInfo], display_name: str
) -> dict[str, zipfile.ZipInfo]:
    """Return the zip's only .asc grid and its .prj (same stem, or the zip's only .prj)."""
    if len(asc) > 1:
        names = ", ".join(e.filename for e in asc[:10])
        fail_one(display_name, f"the zip holds {len(asc)} ASCII grids ({names}); upload one")
    members = {".asc": asc[0]}
    siblings = _siblings(asc[0], entries)
    prj = [e for e in entries if e.filename.lower().endswith(".prj")]
    if ".prj" in siblings:
        members[".prj"] = siblings[".prj"]
    elif len(prj) == 1:
        members[".prj"] = prj[0]
    return members


def _stage_single_member(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    display_name: str,
    directory: Path,
    size: int,
    budget: list[int],
) -> UploadedFile:
    """Return the zip's single dataset member, extracted and identified by its content."""
    scratch = directory / "member.bin"
    _extract(archive, entry, scratch, display_name, budget)
    with scratch.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if _is_zip(head) and _is_xlsx(scratch):
        staged = directory / STAGED_NAMES[FileKind.XLSX]
        scratch.rename(staged)
        return UploadedFile(display_name, FileKind.XLSX, staged, directory, size, (entry.filename,))
    if _is_zip(head):
        fail_one(display_name, "zips inside zips are not accepted", entry=entry.filename)
    if not head.strip():
        fail_one(display_name, "the file is empty", entry=entry.filename)
    kind = sniff_kind(head, f"{display_name}/{entry.filename}")
    staged = directory / STAGED_NAMES[kind]
    scratch.rename(staged)
    return UploadedFile(display_name, kind, staged, directory, size, (entry.filename,))


def _extract(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    target: Path,
    display_name: str,
    budget: list[int],
) -> None:
    """Copy one entry to `target`, stopping if it expands beyond its header or the budget."""
    # Headers can lie: count the bytes actually produced and stop at the declared size
    # or the remaining total budget, whichever is smaller.
    allowed = min(entry.file_size, budget[0])
    written = 0
    try:
        with archive.open(entry) as source, target.open("wb") as sink:
            while chunk := source.read(COPY_CHUNK):
                written += len(chunk)
                if written > allowed:
                    fail_one(
                        display_name,
                        "the entry expands beyond its declared size or the extraction limit "
                        "(possible zip bomb)",
                        too_large=True,
                        entry=entry.filename,
                    )
                sink.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        fail_one(display_name, f"the entry could not be extracted ({exc})", entry=entry.filename)
    except NotImplementedError as exc:
        fail_one(display_name, f"unsupported zip compression ({exc})", entry=entry.filename)
    budget[0] -= written
