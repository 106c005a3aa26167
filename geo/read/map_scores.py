"""What a map's class breaks are computed from: one score of one run, per locality.

Every SQL expression is a constant of this module; a score name only selects among them, and
dimension / indicator keys are bound parameters (never spliced into SQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from geo.errors import NotFoundError, ValidationError
from geo.read.map_classes import classify, integer_classes
from geo.read.tiles import check_run, latest_run_id

# Scores that the vector tiles carry as properties; the page styles these straight from tiles.
TILE_SCORES = {
    "composite": "r.composite",
    "hazard_exposure": "(r.pillars ->> 'hazard_exposure')::float8",
    "vulnerability": "(r.pillars ->> 'vulnerability')::float8",
    "lack_of_coping_capacity": "(r.pillars ->> 'lack_of_coping_capacity')::float8",
    "stressed_dimensions": "r.stressed_dimensions::float8",
}
TILE_SCORE_LABELS = {
    "composite": "Composite risk (0-10)",
    "hazard_exposure": "Pillar: hazard & exposure (0-10)",
    "vulnerability": "Pillar: vulnerability (0-10)",
    "lack_of_coping_capacity": "Pillar: lack of coping capacity (0-10)",
    "stressed_dimensions": "Stressed dimensions (count)",
}
# Scores that are not in the tiles come with a {code: value} table the page joins by code.
DIMENSION_SQL = ("CASE WHEN jsonb_typeof(r.dimensions -> :key -> 'score') = 'number' "
                 "THEN (r.dimensions -> :key ->> 'score')::float8 END")
TREND_SQL = ("CASE WHEN jsonb_typeof(r.details -> 'trend' -> :key -> :period) = 'number' "
             "THEN (r.details -> 'trend' -> :key ->> :period)::float8 END")
PERIODS = ("baseline", "followup", "change")
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


@dataclass(frozen=True)
class ScoreChoice:
    """A parsed `score` parameter: its SQL expression, bound parameters and label."""

    name: str
    expression: str
    params: dict[str, str]
    from_tiles: bool
    diverging: bool = False


def parse_score(score: str) -> ScoreChoice:
    """Return the score named by a tile score, `dimension:<id>` or `trend:<ind>:<period>`."""
    if score in TILE_SCORES:
        return ScoreChoice(score, TILE_SCORES[score], {}, True)
    kind, _, rest = score.partition(":")
    if kind == "dimension" and _KEY.fullmatch(rest):
        return ScoreChoice(score, DIMENSION_SQL, {"key": rest}, False)
    if kind == "trend":
        indicator, _, period = rest.rpartition(":")
        if _KEY.fullmatch(indicator or "") and period in PERIODS:
            return ScoreChoice(score, TREND_SQL, {"key": indicator, "period": period}, False,
                               diverging=period == "change")
    raise ValidationError(
        f"unknown score {score[:80]!r}; use composite, a pillar, stressed_dimensions, "
        "dimension:<id> or trend:<indicator>:baseline|followup|change",
        [{"field": "score", "problem": "unknown score"}],
    )


def resolve_run(conn: Connection, run: str | None) -> dict[str, Any]:
    """Return {"id", "completed_at"} of the run named by id or `latest`, or raise NotFoundError."""
    if run is None or run == "latest":
        run_id = latest_run_id(conn)
        if run_id is None:
            raise NotFoundError("no score run has completed yet",
                                [{"field": "run", "problem": "no run"}])
    else:
        run_id = check_run(conn, run)
    completed: datetime | None = conn.execute(
        text("SELECT completed_at FROM score_runs WHERE id = :id"), {"id": run_id}).scalar()
    return {"id": run_id, "completed_at": completed.isoformat() if completed else None}


def score_values(conn: Connection, run_id: int, choice: ScoreChoice,
                 level: int | None) -> dict[str, float | None]:
    """Return {locality code: value} of the score over the run's localities (one level or all)."""
    sql = text(
        f"SELECT l.code, {choice.expression} AS value "  # expression from the allow-list above
        "FROM score_results r JOIN localities l ON l.id = r.locality_id "
        "WHERE r.run_id = :run AND (CAST(:level AS integer) IS NULL OR l.level = :level) "
        "ORDER BY l.code"
    )
    rows = conn.execute(sql, {"run": run_id, "level": level, **choice.params})
    return {code: (None if value is None else float(value)) for code, value in rows}


def classes_of(conn: Connection, run_id: int, choice: ScoreChoice, level: int | None,
               method: str, k: int, palette: str) -> dict[str, Any]:
    """Return a score's class breaks, colours and counts; {code: value} when not in the tiles."""
    values = score_values(conn, run_id, choice, level)
    data = list(values.values())
    if choice.name == "stressed_dimensions":
        result = integer_classes(data, palette)
    else:
        result = classify(data, method, k, palette, choice.diverging)
    missing = sum(1 for value in data if value is None)
    return {**result.as_dict(), "count": len(values) - missing, "missing": missing,
            "values": None if choice.from_tiles else values}


_OPTIONS_SQL = text("""
    -- One pass over the run's trend documents (detoasting them is the cost), used three times.
    WITH trend AS MATERIALIZED (
      SELECT DISTINCT t.key, t.value ->> 'baseline_period' AS baseline,
             t.value ->> 'followup_period' AS followup
      FROM score_results r, jsonb_each(coalesce(r.details -> 'trend', '{}'::jsonb)) t
      WHERE r.run_id = :run)
    SELECT
      (SELECT coalesce(jsonb_agg(DISTINCT level ORDER BY level), '[]'::jsonb) FROM localities),
      (SELECT coalesce(jsonb_object_agg(key, value ->> 'label'), '{}'::jsonb) FROM (
         SELECT DISTINCT ON (d.key) d.key, d.value FROM score_results r,
           jsonb_each(r.dimensions) d WHERE r.run_id = :run ORDER BY d.key) dims),
      (SELECT coalesce(jsonb_agg(DISTINCT key), '[]'::jsonb) FROM trend),
      (SELECT coalesce(jsonb_agg(DISTINCT baseline), '[]'::jsonb) FROM trend),
      (SELECT coalesce(jsonb_agg(DISTINCT followup), '[]'::jsonb) FROM trend),
      (SELECT max(stressed_dimensions) FROM score_results WHERE run_id = :run)
""")


def map_options(conn: Connection, run_id: int) -> dict[str, Any]:
    """Return the levels, scores, dimensions and trend indicators the map can show for a run."""
    levels, dimensions, indicators, baselines, followups, max_stressed = conn.execute(
        _OPTIONS_SQL, {"run": run_id}).one()
    scores = [{"id": key, "label": label, "from_tiles": True}
              for key, label in TILE_SCORE_LABELS.items()]
    scores += [{"id": f"dimension:{key}", "label": f"Dimension: {label or key} (0-10)",
                "from_tiles": False} for key, label in sorted(dimensions.items())]
    return {
        "levels": levels,
        "scores": scores,
        "indicators": sorted(indicators),
        "periods": {"baseline": sorted(p for p in baselines if p),
                    "followup": sorted(p for p in followups if p)},
        "max_stressed_dimensions": int(max_stressed or 0),
        "dimension_count": len(dimensions),
    }
