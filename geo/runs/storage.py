"""Writing a run's results: one COPY of every locality's row in one transaction."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from geo.runs import cells

RESULT_COLUMNS = ("locality_id", "composite", "pillars", "dimensions", "components",
                  "completeness", "stressed_dimensions", "compounded", "hotspot", "quadrant",
                  "rank", "rank_in_parent", "rank_low", "rank_high", "details")
JSON_COLUMNS = {"pillars", "dimensions", "components", "details"}
INT_COLUMNS = {"locality_id", "stressed_dimensions", "rank", "rank_in_parent", "rank_low",
               "rank_high"}


def store_results(engine: Engine, run_id: int, results: pd.DataFrame) -> None:
    """COPY every locality's results of the run in one transaction."""
    with engine.begin() as conn:
        _fast_toast_compression(conn)
        raw = conn.connection.driver_connection
        assert raw is not None
        columns = ("run_id", *RESULT_COLUMNS)
        # column-wise values, then rows encoded as they are sent: the server parses the
        # JSON of earlier rows (on another core) while later ones are encoded here
        values = [results[name].tolist() for name in RESULT_COLUMNS]
        with raw.cursor() as cursor, cursor.copy(
                f"COPY score_results ({', '.join(columns)}) FROM STDIN") as copy:
            for row in zip(*values, strict=True):
                copy.write_row((run_id, *(_cell(name, value)
                                          for name, value in zip(RESULT_COLUMNS, row,
                                                                 strict=True))))


def _fast_toast_compression(conn: Any) -> None:
    """Compress this transaction's large JSON values with lz4 where the server has it.

    pglz (the default) spends about as long compressing the results as parsing them;
    lz4 is several times faster. Only the on-disk form changes, never what is read back.
    """
    available = conn.execute(text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")).scalar()
    if available:
        conn.execute(text("SET LOCAL default_toast_compression = 'lz4'"))


def _cell(name: str, value: Any) -> Any:
    if name in JSON_COLUMNS:
        # our records are trees built fresh per row: the cycle check only costs time
        return json.dumps(value, default=cells.plain, allow_nan=False, check_circular=False,
                          separators=(",", ":"))  # jsonb keeps no whitespace anyway
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    if value is pd.NA:
        return None
    if name in INT_COLUMNS:
        return int(value)
    if name == "compounded":
        return bool(value)
    return value.item() if isinstance(value, np.generic) else value
