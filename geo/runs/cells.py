"""Plain values for stored results: floats rounded to 6 places, None for missing, no numpy."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd


def numbers(frame: pd.DataFrame) -> np.ndarray:
    """Return frame as an object array of floats rounded like `num`, None where missing."""
    columns = [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
               for c in frame.columns]
    values = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    finite = np.isfinite(values)
    # Python's round, as `num`: np.round (scale, rint, unscale) differs in about one
    # value in a million at 1e5 and above
    rounded = [round(v, 6) if ok else None
               for v, ok in zip(values.ravel().tolist(), finite.ravel().tolist(), strict=True)]
    return np.array(rounded, dtype=object).reshape(values.shape)


def records(frame: pd.DataFrame, drop_missing: bool = False) -> list[dict[str, Any]]:
    """Return one {column: num(value)} dict per row, built column-wise (no iterrows)."""
    names = [str(c) for c in frame.columns]
    rows = numbers(frame).tolist()
    if drop_missing:
        return [{k: v for k, v in zip(names, row, strict=True) if v is not None}
                for row in rows]
    return [dict(zip(names, row, strict=True)) for row in rows]


def bools(frame: pd.DataFrame) -> np.ndarray:
    """Return frame as an object array of bools, None where missing (like `as_bool`)."""
    plain = frame.astype(object)
    return plain.where(frame.notna(), None).map(bool_or_none).to_numpy()


def bool_or_none(value: Any) -> bool | None:
    """Return value as a Python bool, None when missing."""
    return None if value is None else bool(value)


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return frame's rows as dicts: floats like `num`, everything else like `plain`."""
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column.dtype):
            columns[name] = numbers(column.to_frame())[:, 0]
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biu":
            columns[name] = np.array(column.tolist(), dtype=object)  # never missing
        elif isinstance(column.dtype, pd.StringDtype | pd.Int64Dtype | pd.BooleanDtype):
            # a string (int, bool) or missing: plain would return the value, or None
            plain = np.array(column.tolist(), dtype=object)
            plain[column.isna().to_numpy()] = None
            columns[name] = plain
        else:
            columns[name] = np.array([plain(v) for v in column.tolist()], dtype=object)
    names = [str(c) for c in frame.columns]
    rows = zip(*(columns[c] for c in frame.columns), strict=True) if names else []
    return [dict(zip(names, row, strict=True)) for row in rows]


def grouped(keys: pd.Series, records: list[Any]) -> dict[Any, list[Any]]:
    """Return records grouped by key, each group in the original order."""
    groups: dict[Any, list[Any]] = {}
    for key, record in zip(keys.tolist(), records, strict=True):
        groups.setdefault(key, []).append(record)
    return groups


def num(value: Any) -> float | None:
    """Return value as a float rounded to 6 places; None when missing, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) or np.isinf(number) else round(number, 6)


def as_bool(value: Any) -> bool | None:
    """Return value as a Python bool; None when missing (None, NA or NaN)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value)


def plain(value: Any) -> Any:
    """Return value as a plain JSON-ready Python value: numpy unwrapped, dates as ISO text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (np.isnan(value) or np.isinf(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()
    return value
