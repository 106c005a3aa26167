"""The `households` kind: person-level survey microdata for the Alkire-Foster measures.

One row per person: locality code, household id (optional: without one, each person is their
own household), person id, sampling weight, the survey period (a column, or the `period`
option), subgroup attributes (sex, age, disability, status, ... or the columns named in the
`subgroups` option) and one column per indicator, named by its code in the indicator table.

An indicator published as a share (unit percent or share) is a 0/1 answer per person (1 = in
the numerator); any other indicator is a value compared with the indicator's cutoff. Every
problem is refused before anything is written, naming file, row, field and problem: weights
that are not positive, unknown locality codes, columns that are neither an attribute nor a
defined indicator, values other than 0/1 for a binary indicator, a value indicator without a
cutoff, and a person id that appears twice. A file loaded again replaces the records of the
(locality, period) pairs it holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from geo.analysis.alkire_foster import is_binary
from geo.ingest import _columns as cols
from geo.ingest._problems import fail, fail_one, problem
from geo.ingest.files import VECTOR_KINDS, UploadedFile
from geo.ingest.vectors import read_table

CODE_NAMES = ("locality_code", "code", "pcode", "p_code", "placecode", "village_code")
HOUSEHOLD_NAMES = ("household_id", "household", "hh_id", "hhid")
PERSON_NAMES = ("person_id", "person", "individual_id", "member_id", "pid", "id")
WEIGHT_NAMES = ("weight", "sampling_weight", "survey_weight", "wt", "pweight", "hhweight")
PERIOD_NAMES = ("period", "year", "survey_round", "round")
# Subgroup attributes recognised by name; the key on the left is how the subgroup is spelt
# in outputs (`sex=female`), so that microdata and aggregate observations line up.
ATTRIBUTE_NAMES: dict[str, str] = {
    "sex": "sex", "gender": "sex", "age": "age", "age_band": "age", "age_group": "age",
    "disability": "disability", "disabled": "disability", "status": "status",
    "migrant_status": "status", "migration_status": "status", "displacement": "status",
    "ethnicity": "ethnicity", "religion": "religion", "area": "area", "urban_rural": "area",
    "wealth_quintile": "wealth", "marital_status": "marital_status",
}
MAX_ID_LENGTH = 100


def households_from_upload(upload: UploadedFile, indicators: pd.DataFrame,
                           known_localities: Iterable[str], options: Any) -> pd.DataFrame:
    """Return the clean records of an upload, or raise naming every problem."""
    if upload.kind in VECTOR_KINDS or upload.is_raster:
        fail_one(upload.original_name, f"household microdata come as a table (CSV), not a "
                 f"{upload.kind.value} file")
    return normalise_households(read_table(upload, options), indicators, set(known_localities),
                                file_name=upload.original_name, period=options.period,
                                extra_attributes=options.subgroups or ())


def normalise_households(
    frame: pd.DataFrame, indicators: pd.DataFrame, known_localities: set[str], *,
    file_name: str, period: str | None = None, extra_attributes: Sequence[str] = (),
) -> pd.DataFrame:
    """Return locality_code, period, household_id, person_id, weight, attributes, values.

    indicators: the indicator table (index = code; polarity, cutoff, unit).
    """
    find = partial(cols.find_column, frame, None, file_name=file_name)
    require = partial(cols.require_column, frame, None, file_name=file_name)
    code_col = require(CODE_NAMES, "locality code")
    person_col = require(PERSON_NAMES, "person id")
    weight_col = require(WEIGHT_NAMES, "sampling weight",
                         hint="give every person their survey weight (1 for a census)")
    household_col = find(HOUSEHOLD_NAMES)
    period_col = find(PERIOD_NAMES)
    if period_col is None and period is None:
        fail_one(file_name, "no period column (period, year, round) and no `period` option: "
                 "say which survey round the file holds")
    attributes = _attribute_columns(frame, extra_attributes, file_name)
    used = {code_col, person_col, weight_col, household_col, period_col, *attributes}
    indicator_cols = _indicator_columns(frame, used, indicators, file_name)
    weights = cols.numbers(frame, weight_col, file_name=file_name, required=True)
    _refuse_non_positive(frame, weights, weight_col, file_name)
    codes = _ids(frame, code_col, file_name)
    _refuse_unknown(frame, codes, code_col, known_localities, file_name)
    persons = _ids(frame, person_col, file_name)
    households = _ids(frame, household_col, file_name) if household_col else persons
    periods = (_ids(frame, period_col, file_name) if period_col
               else pd.Series(period, index=frame.index, dtype=object))
    values = {code: _indicator_values(frame, column, indicators.loc[code], file_name)
              for code, column in indicator_cols.items()}
    result = pd.DataFrame({"locality_code": codes, "period": periods,
                           "household_id": households, "person_id": persons,
                           "weight": weights}, index=frame.index)
    keys = result[["locality_code", "period", "household_id", "person_id"]]
    cols.duplicates(frame, keys, file_name=file_name, field=person_col, what="person")
    result["attributes"] = _attribute_dicts(frame, attributes)
    value_frame = pd.DataFrame(values, index=frame.index)
    result["indicator_values"] = [
        {code: (None if math.isnan(v) else v) for code, v in row.items()}
        for row in value_frame.to_dict("records")]
    return result


def _attribute_columns(frame: pd.DataFrame, extra: Sequence[str],
                       file_name: str) -> dict[str, str]:
    """Return {file column: subgroup key} for the attribute columns."""
    found: dict[str, str] = {}
    for column in frame.columns:
        key = ATTRIBUTE_NAMES.get(str(column).strip().lower())
        if key:
            found[column] = key
    for name in extra:
        column = cols.find_column(frame, name, (), file_name=file_name)
        assert column is not None
        found[column] = str(name).strip().lower().replace(" ", "_")
    keys = list(found.values())
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        fail_one(file_name, f"two columns give the same subgroup attribute {repeated[0]!r}",
                 field=", ".join(c for c, k in found.items() if k == repeated[0]))
    return found


def _indicator_columns(frame: pd.DataFrame, used: set[str | None], indicators: pd.DataFrame,
                       file_name: str) -> dict[str, str]:
    """Return {indicator code: column}; refuse columns that are not a defined indicator."""
    by_lower = {str(code).lower(): code for code in indicators.index}
    found, details = {}, []
    for column in frame.columns:
        if column in used:
            continue
        code = by_lower.get(str(column).strip().lower())
        if code is None:
            details.append(problem(
                file_name, "not a defined indicator: load its metadata (kind indicators) "
                "first, or name the column in the `subgroups` option if it is a subgroup "
                "attribute", field=str(column)))
            continue
        meta = indicators.loc[code]
        if not is_binary(meta["unit"]) and _missing(meta["cutoff"]):
            details.append(problem(
                file_name, f"indicator {code!r} (unit {meta['unit']!r}) has no cutoff, so no "
                "person can be called deprived in it; give it a cutoff", field=str(column)))
            continue
        found[code] = column
    if details:
        fail(details)
    if not found:
        fail_one(file_name, "no indicator columns: name one column per indicator by its code")
    return found


def _indicator_values(frame: pd.DataFrame, column: str, meta: pd.Series,
                      file_name: str) -> pd.Series:
    values = cols.numbers(frame, column, file_name=file_name)
    if is_binary(meta["unit"]):
        bad = values.notna() & ~values.isin([0.0, 1.0])
        if bad.any():
            fail([problem(file_name, f"{values[label]:g} is not 0 or 1 (indicator "
                          f"{meta.name!r} is a share: 1 = counted, 0 = not)", field=column,
                          **cols.where(frame, label)) for label in values.index[bad]])
    return values


def _refuse_non_positive(frame: pd.DataFrame, weights: pd.Series, column: str,
                         file_name: str) -> None:
    bad = weights <= 0
    if bad.any():
        fail([problem(file_name, f"weight {weights[label]:g} is not positive (every person "
                      "stands for at least part of someone)", field=column,
                      **cols.where(frame, label)) for label in weights.index[bad]])


def _refuse_unknown(frame: pd.DataFrame, codes: pd.Series, column: str, known: set[str],
                    file_name: str) -> None:
    unknown = ~codes.isin(known)
    if unknown.any():
        fail([problem(file_name, f"unknown locality code {codes[label]!r} (load the "
                      "boundaries first)", field=column, **cols.where(frame, label))
              for label in codes.index[unknown]])


def _ids(frame: pd.DataFrame, column: str, file_name: str) -> pd.Series:
    values = cols.text_values(frame, column)
    details = [problem(file_name, "the value is missing" if value is None else
                       f"longer than {MAX_ID_LENGTH} characters", field=column,
                       **cols.where(frame, label))
               for label, value in values.items()
               if value is None or len(value) > MAX_ID_LENGTH]
    if details:
        fail(details)
    return values


def _attribute_dicts(frame: pd.DataFrame, attributes: dict[str, str]) -> list[dict[str, str]]:
    if not attributes:
        return [{} for _ in range(len(frame))]
    texts = {key: cols.text_values(frame, column).map(
        lambda v: None if v is None else v.lower()) for column, key in attributes.items()}
    table = pd.DataFrame(texts, index=frame.index)
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_dict("records")]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# -- loading --------------------------------------------------------------------------------
def load_households(ctx: Any) -> dict[str, Any]:
    """Validate and load household microdata in one transaction; return a summary.

    ctx: the `geo.ingest.load.Load` in progress (engine, upload, options, report, dry run).
    """
    ctx.report(0.1, "reading the microdata")
    with ctx.transaction() as conn:
        indicators = pd.DataFrame(conn.execute(text(
            "SELECT code, polarity, cutoff, unit FROM indicators")).mappings().all(),
            columns=["code", "polarity", "cutoff", "unit"]).set_index("code")
        localities = dict(conn.execute(text("SELECT code, id FROM localities")).all())
        frame = households_from_upload(ctx.upload, indicators, localities, ctx.options)
        ctx.report(0.5, f"loading {len(frame)} people")
        dataset_id = _record_dataset(conn, ctx.upload, len(frame), ctx.options, ctx.work_id)
        ids = frame["locality_code"].map(localities)
        pairs = sorted(set(zip(ids.astype(int), frame["period"], strict=True)))
        conn.execute(text(
            "DELETE FROM household_records WHERE (locality_id, period) IN "
            "(SELECT * FROM unnest(CAST(:ids AS int[]), CAST(:periods AS text[])))"),
            {"ids": [p[0] for p in pairs], "periods": [p[1] for p in pairs]})
        rows = zip(ids.astype(int), frame["period"], frame["household_id"],
                   frame["person_id"], frame["weight"], frame["attributes"].map(json.dumps),
                   frame["indicator_values"].map(json.dumps), strict=True)
        _copy(conn, ["locality_id", "period", "household_id", "person_id", "weight",
                     "attributes", "indicator_values"],
              ([*(_plain(v) for v in row), dataset_id] for row in rows))
    ctx.report(1.0, "done")
    codes = sorted(next(iter(frame["indicator_values"]), {}))
    keys = sorted({k for row in frame["attributes"] for k in row})
    return {"dataset_id": dataset_id, "rows": len(frame),
            "localities": int(frame["locality_code"].nunique()),
            "periods": sorted(frame["period"].unique().tolist()),
            "indicators": codes, "subgroups": keys, "warnings": []}


def _record_dataset(conn: Connection, upload: UploadedFile, rows: int, options: Any,
                    work_id: str) -> int:
    # The same provenance record every loader writes (geo.ingest.load._record_dataset); the
    # job is linked only when it exists (the CLI's direct path has none).
    job = conn.execute(text("SELECT id FROM jobs WHERE id::text = :id"), {"id": work_id}).scalar()
    return int(conn.execute(text(
        "INSERT INTO datasets (kind, name, source_filename, sha256, row_count, options, report, "
        "job_id) VALUES ('households', :name, :name, :sha, :rows, CAST(:options AS jsonb), "
        "'{}'::jsonb, :job) RETURNING id"),
        {"name": upload.original_name, "sha": _sha256(upload), "rows": rows,
         "options": options.model_dump_json(), "job": job}).scalar_one())


def _sha256(upload: UploadedFile) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(upload.path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(conn: Connection, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(
            f"COPY household_records ({', '.join(columns)}, dataset_id) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
