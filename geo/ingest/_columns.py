"""Column helpers shared by the normalisers: lookup by alias, typed parsing, JSON attributes."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geo.ingest._problems import fail_one, fail_rows, problem

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "t", "oui", "ya"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "f", "", "non", "tidak"})
# Tried in order; the first that parses every value of the column wins, so a column is
# read one consistent way (no row-by-row guessing between day-first and month-first).
THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
DOT_THOUSANDS = re.compile(r"-?\d{1,3}(\.\d{3})+(,\d+)?")
DATE_FORMATS = (
    "ISO8601", "%d %B %Y", "%d %b %Y", "%d/%m/%Y", "%d.%m.%Y", "%m/%d/%Y", "%Y/%m/%d",
    "%d-%m-%Y", "%Y%m%d", "%d/%m/%y", "%m/%d/%y", "%d.%m.%y",
)
# Words that mean "no value" in a number column (spreadsheets and exports write them);
# in a text column they stay text ("NA" is Namibia's code).
MISSING_NUMBER_WORDS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a", "-", "--", "—"})


def location_label(frame: pd.DataFrame) -> str:
    """Return what a row of this frame is called in messages: row, feature or item."""
    name = frame.index.name
    return name if name in ("row", "feature", "item") else "row"


def where(frame: pd.DataFrame, label: Hashable) -> dict[str, Any]:
    """Return the keyword naming one row of `frame` for `problem`/`fail_one`."""
    return {location_label(frame): label}


def find_column(
    frame: pd.DataFrame, explicit: str | None, aliases: Sequence[str], *, file_name: str
) -> str | None:
    """Return the explicit column (must exist) or the first alias present, case-insensitively."""
    lookup = {str(column).strip().lower(): column for column in frame.columns}
    if explicit is not None:
        if explicit in frame.columns:
            return explicit
        if explicit.lower() in lookup:
            return lookup[explicit.lower()]
        available = ", ".join(map(str, frame.columns))
        fail_one(file_name, f"no such column (columns are: {available})", field=explicit)
    for alias in aliases:
        if alias.lower() in lookup:
            return lookup[alias.lower()]
    return None


def require_column(
    frame: pd.DataFrame,
    explicit: str | None,
    aliases: Sequence[str],
    what: str,
    *,
    file_name: str,
    hint: str | None = None,
) -> str:
    """Return the column for `what`, or raise naming the names looked for (and a hint)."""
    column = find_column(frame, explicit, aliases, file_name=file_name)
    if column is None:
        available = ", ".join(map(str, frame.columns))
        fail_one(
            file_name,
            f"no {what} column: looked for {', '.join(aliases)} (columns are: {available})"
            + (f"; {hint}" if hint else ""),
        )
    return column


def is_blank(value: Any) -> bool:
    """Return True for None, NaN, NaT and whitespace-only strings."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_text(value: Any) -> str | None:
    """Return one cell as stripped text (None when blank); an integral float loses '.0'."""
    if is_blank(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip()


def text_values(frame: pd.DataFrame, column: str) -> pd.Series:
    """Return a column as stripped strings, None where blank, in an object Series.

    Built element by element: `Series.map(...).astype(object)` turns None into NaN under
    pandas 3's string dtype, and NaN is truthy, so "missing" would pass as a value.
    """
    return pd.Series([as_text(v) for v in frame[column]], index=frame.index, dtype=object)


def numbers(
    frame: pd.DataFrame,
    column: str,
    *,
    file_name: str,
    required: bool = False,
    minimum: float | None = None,
    integer: bool = False,
) -> pd.Series:
    """Return a column as floats (NaN where blank); raise naming every bad row."""
    details = []
    values: list[float] = []
    # The reader records a CSV's decimal mark (',' beside a ';' delimiter) on the frame.
    decimal_comma = frame.attrs.get("decimal") == ","
    for label, raw in frame[column].items():
        value, issue = _one_number(raw, required=required, minimum=minimum, integer=integer,
                                   decimal_comma=decimal_comma)
        if issue:
            details.append(problem(file_name, issue, field=column, **where(frame, label)))
        values.append(value)
    fail_rows(details)
    return pd.Series(values, index=frame.index, dtype="float64")


def _one_number(
    raw: Any, *, required: bool, minimum: float | None, integer: bool,
    decimal_comma: bool = False,
) -> tuple[float, str | None]:
    """Return (value, problem-or-None) for one cell."""
    if is_blank(raw) or (isinstance(raw, str) and raw.strip().lower() in MISSING_NUMBER_WORDS):
        return math.nan, ("the value is missing" if required else None)
    if isinstance(raw, bool | np.bool_):
        return math.nan, f"{raw!r} is not a number"
    text = str(raw).strip()
    cleaned = text.replace("_", "").replace(" ", "").replace("\u00a0", "")
    if decimal_comma and isinstance(raw, str):
        # "1.234,5" → 1234.5: dots group thousands, the comma marks the decimals.
        if DOT_THOUSANDS.fullmatch(cleaned):
            cleaned = cleaned.replace(".", "")
        cleaned = cleaned.replace(",", ".")
    # A thousands separator is common in hand-made tables ("1,234,567"); a lone comma is
    # ambiguous with a decimal comma, so it is refused rather than guessed.
    if THOUSANDS.fullmatch(cleaned):
        cleaned = cleaned.replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return math.nan, f"{text[:60]!r} is not a number"
    if not math.isfinite(value):
        return math.nan, f"{str(raw)[:60]!r} is not a finite number"
    if minimum is not None and value < minimum:
        return math.nan, f"{value:g} is below the minimum of {minimum:g}"
    if integer and not value.is_integer():
        return math.nan, f"{value:g} is not a whole number"
    return value, None


def dates(
    frame: pd.DataFrame, column: str, *, file_name: str, date_format: str | None = None
) -> pd.Series:
    """Return a column as `datetime.date` objects (None where unusable); report bad rows.

    With `date_format` (strftime codes, e.g. %d/%m/%y) only that format is tried; otherwise
    the first of DATE_FORMATS that reads the most values wins, so a column is read one
    consistent way. A refusal names the format(s) tried.
    """
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw) and date_format is None:
        parsed, tried = raw, "a date"
    else:
        text = pd.Series([_date_text(v) for v in raw], index=frame.index, dtype=object)
        parsed, tried = _best_date_parse(text, date_format)
    details = [
        problem(
            file_name,
            "the date is missing"
            if is_blank(raw[label])
            else f"cannot parse {str(raw[label])[:60]!r} as a date (tried {tried}; "
            "pass the format with --date-format, e.g. %d/%m/%y)",
            field=column,
            **where(frame, label),
        )
        for label, value in parsed.items()
        if pd.isna(value)
    ]
    fail_rows(details)
    return pd.Series(
        [None if pd.isna(value) else pd.Timestamp(value).date() for value in parsed],
        index=frame.index, dtype=object,
    )


def _date_text(value: Any) -> str | None:
    """Return a cell as text for date parsing; spreadsheet datetimes keep only the date."""
    if is_blank(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _best_date_parse(text: pd.Series, date_format: str | None) -> tuple[pd.Series, str]:
    """Return the parse by the format that reads the most values, and what was tried."""
    formats = (date_format,) if date_format else DATE_FORMATS
    best: pd.Series | None = None
    best_format = formats[0]
    present = int(text.notna().sum())
    for candidate in formats:
        try:
            parsed = pd.to_datetime(text, format=candidate, errors="coerce", utc=False)
        except (ValueError, TypeError):
            parsed = pd.Series(pd.NaT, index=text.index)
        # Years outside 1800-2200 are misreadings ("01/01/20" read with %Y is year 20).
        years = parsed.dt.year
        parsed = parsed.where((years >= 1800) & (years <= 2200))
        if best is None or parsed.notna().sum() > best.notna().sum():
            best, best_format = parsed, candidate
        if parsed.notna().sum() == present:
            break
    assert best is not None
    if date_format:
        return best, f"the format {date_format}"
    if present and best.notna().sum() == 0:
        return best, "the formats " + ", ".join(DATE_FORMATS)
    return best, f"the format {best_format}, which reads most of the column"


def booleans(frame: pd.DataFrame, column: str, *, file_name: str) -> pd.Series:
    """Return a column as bools (blank = False); raise naming rows that are not yes/no."""
    details = []
    values: list[bool] = []
    for label, raw in frame[column].items():
        word = (as_text(raw) or "").lower()
        if isinstance(raw, bool | np.bool_):
            values.append(bool(raw))
        elif word in TRUE_WORDS or word in FALSE_WORDS:
            values.append(word in TRUE_WORDS)
        else:
            values.append(False)
            details.append(
                problem(
                    file_name,
                    f"{str(raw)[:60]!r} is not a yes/no value",
                    field=column,
                    **where(frame, label),
                )
            )
    fail_rows(details)
    return pd.Series(values, index=frame.index, dtype=bool)


def json_value(value: Any) -> Any:
    """Return a value that json.dumps accepts: NaN → None, numpy → Python, dates → ISO."""
    if is_blank(value) and not isinstance(value, str):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def attributes(frame: pd.DataFrame, used: Iterable[str | None]) -> pd.Series:
    """Return, per row, a JSON-able dict of the columns not already used."""
    skip = {column for column in used if column} | {"geometry"}
    rest = [column for column in frame.columns if column not in skip]
    records = frame[rest].to_dict("records")
    cleaned = [{str(k): json_value(v) for k, v in record.items()} for record in records]
    return pd.Series(cleaned, index=frame.index, dtype=object)


def duplicates(
    frame: pd.DataFrame, keys: pd.Series | pd.DataFrame, *, file_name: str, field: str, what: str
) -> None:
    """Raise naming both rows of every duplicated key (first occurrence and repeat)."""
    key_rows = keys.apply(tuple, axis=1) if isinstance(keys, pd.DataFrame) else keys
    first_seen: dict[Any, Hashable] = {}
    details = []
    label_name = location_label(frame)
    for label, key in key_rows.items():
        if key in first_seen:
            shown = key if not isinstance(key, tuple) or len(key) > 1 else key[0]
            details.append(
                problem(
                    file_name,
                    f"duplicate {what} {shown!r}: {label_name}s {first_seen[key]} and {label} "
                    "both have it",
                    field=field,
                    **where(frame, label),
                )
            )
        else:
            first_seen[key] = label
    fail_rows(details)
