"""Two runs side by side: per locality the change in every score, rank and stress count.

Pure pandas. Scores compare over time only when both runs scale every component the same
way with fixed goalposts; `comparability` says when they do not, and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from geo.analysis.methodology import Methodology


def comparability(before: Methodology, after: Methodology) -> dict[str, Any]:
    """Return {"comparable": bool, "reasons": [...]}: do the runs share their goalposts?

    Relative components move with everybody else's values, and a change of goalposts,
    transform, weight or aggregation moves every score: either way a change between the
    runs would be partly the method's, not the place's.
    """
    reasons = []
    for label, methodology in (("earlier", before), ("later", after)):
        relative = methodology.relative_components()
        if relative:
            reasons.append(f"the {label} run scales {', '.join(relative)} relative to the "
                           "country (no fixed goalposts): their scores move with other "
                           "localities' values")
    a, b = before.goalposts_signature(), after.goalposts_signature()
    changed = sorted(k for k in a["components"].keys() | b["components"].keys()
                     if a["components"].get(k) != b["components"].get(k))
    if changed:
        reasons.append("goalposts, transform, polarity or weight differ for "
                       + ", ".join(changed))
    for part in ("dimensions", "pillars", "aggregation"):
        if a[part] != b[part]:
            reasons.append(f"the {part} of the two methodologies differ")
    return {"comparable": not reasons, "reasons": reasons}


def _scores(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Return a frame of the 'score' (or plain number) in each dict of `column`."""
    def value(item: Any) -> Any:
        return item.get("score") if isinstance(item, dict) else item

    return pd.DataFrame([{k: value(v) for k, v in (cell or {}).items()}
                         for cell in frame[column]], index=frame.index, dtype=float)


def compare_results(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Return per locality (index: code) the change from `before` to `after`.

    Both frames: composite, rank, stressed_dimensions, compounded, pillars (dict),
    dimensions (dict of {"score": ...}), indexed by code. Changes are after - before
    (a rank change below 0 means the locality moved towards rank 1, further behind).
    compounded_change: "entered" / "left" compounded stress, "stayed" in it, "outside"
    both times, None where either run has no call.
    """
    index = before.index.union(after.index)
    a, b = before.reindex(index), after.reindex(index)
    out = pd.DataFrame(index=index)
    for column in ("composite", "rank", "stressed_dimensions"):
        out[f"{column}_before"] = pd.to_numeric(a[column], errors="coerce")
        out[f"{column}_after"] = pd.to_numeric(b[column], errors="coerce")
        out[f"{column}_change"] = out[f"{column}_after"] - out[f"{column}_before"]
    was = a["compounded"].map(lambda v: None if v is None or pd.isna(v) else bool(v))
    now = b["compounded"].map(lambda v: None if v is None or pd.isna(v) else bool(v))
    known = was.notna() & now.notna()
    status = np.select([known & ~was.fillna(False).astype(bool) & now.fillna(False).astype(bool),
                        known & was.fillna(False).astype(bool) & ~now.fillna(False).astype(bool),
                        known & was.fillna(False).astype(bool),
                        known], ["entered", "left", "stayed", "outside"], default="")
    out["compounded_before"], out["compounded_after"] = was, now
    out["compounded_change"] = pd.Series(status, index=index).replace("", None)
    for column in ("pillars", "dimensions"):
        first = _scores(a.assign(**{column: a[column].where(a[column].notna(), None)}), column)
        second = _scores(b.assign(**{column: b[column].where(b[column].notna(), None)}), column)
        names = list(dict.fromkeys([*first.columns, *second.columns]))
        change = second.reindex(columns=names) - first.reindex(columns=names)
        out[f"{column}_change"] = [
            {k: (None if pd.isna(v) else round(float(v), 6)) for k, v in row.items()}
            for row in change.to_dict("records")]
    return out
