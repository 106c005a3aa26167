"""Class breaks (mapclassify) and colour-blind-safe palettes (branca) for choropleths."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import mapclassify  # type: ignore[import-untyped]
import numpy as np
from branca.colormap import linear
from branca.utilities import color_brewer

from geo.errors import NotFoundError, ValidationError

# ColorBrewer schemes marked colour-blind safe, plus viridis (perceptually uniform, CVD-safe).
SEQUENTIAL_PALETTES = ("YlOrRd", "viridis", "YlGnBu", "PuRd", "OrRd")
DIVERGING_PALETTES = ("PuOr", "RdBu", "BrBG")
PALETTES = SEQUENTIAL_PALETTES + DIVERGING_PALETTES
METHODS = ("quantiles", "natural_breaks", "equal_interval", "fisher_jenks")
NO_DATA_COLOUR = "#d9d9d9"


@dataclass(frozen=True)
class Classes:
    """Class breaks over a set of values, one colour per class, and counts per class."""

    method: str
    palette: str
    breaks: list[float]  # k + 1 edges: lowest value, then each class's upper bound
    colours: list[str]
    counts: list[int]

    def as_dict(self) -> dict[str, object]:
        """Return the JSON shape the map page reads."""
        return {"method": self.method, "palette": self.palette, "breaks": self.breaks,
                "colours": self.colours, "counts": self.counts, "no_data_colour": NO_DATA_COLOUR}


def palette_colours(palette: str, k: int, reverse: bool = False) -> list[str]:
    """Return k hex colours of a colour-blind-safe palette, light to dark (or reversed)."""
    if palette not in PALETTES:
        raise ValidationError(f"unknown palette {palette!r}; choose one of {', '.join(PALETTES)}",
                              [{"field": "palette", "problem": "unknown palette"}])
    if palette == "viridis":
        # viridis runs dark to light; flip it so every sequential palette is light = low.
        colours = _viridis(k)
    else:
        colours = [c.lower() for c in color_brewer(palette, n=max(k, 3))][: max(k, 3)]
        if k < 3:
            colours = [colours[0], colours[-1]][:k] if k == 2 else [colours[-1]]
    return list(reversed(colours)) if reverse else colours


def _viridis(k: int) -> list[str]:
    # branca cannot step a colormap into fewer than two colours (all values in one class).
    count = max(k, 2)
    step = linear.viridis.to_step(count)  # type: ignore[attr-defined]  # set per scheme
    colours = [step.rgb_hex_str(v) for v in np.linspace(step.vmin, step.vmax, count)]
    return list(reversed(colours))[-k:]


def _finite(values: Sequence[float | None]) -> np.ndarray:
    array = np.array([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def _no_values() -> NotFoundError:
    # No locality has the score (e.g. a dimension absent at this level): nothing to map.
    return NotFoundError("there are no values to classify",
                         [{"field": "score", "problem": "no values"}])


def integer_classes(values: Sequence[float | None], palette: str) -> Classes:
    """Return one class per integer value (stressed-dimension counts), 0 .. the maximum."""
    data = _finite(values)
    if data.size == 0:
        raise _no_values()
    top = int(max(1, math.ceil(data.max())))
    # Integer counts have few distinct values: quantiles would merge or duplicate classes.
    edges = [float(n) for n in range(0, top + 1)]
    colours = palette_colours(palette, len(edges))
    counts = [int(np.sum(data == edge)) for edge in edges]
    return Classes("integer", palette, [-0.5, *edges], colours, counts)


def classify(values: Sequence[float | None], method: str, k: int, palette: str,
             diverging: bool = False) -> Classes:
    """Return mapclassify breaks of the values into k classes, with a palette's colours."""
    if method not in METHODS:
        raise ValidationError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}",
                              [{"field": "method", "problem": "unknown method"}])
    data = _finite(values)
    if data.size == 0:
        raise _no_values()
    k = max(2, min(int(k), 9, int(np.unique(data).size)))
    if np.unique(data).size < 2:
        edges = [float(data.min()), float(data.max())]
    else:
        with warnings.catch_warnings():
            # mapclassify warns when classes collapse; the deduplication below handles it.
            warnings.simplefilter("ignore")
            edges = [float(data.min()), *(float(b) for b in _bins(data, method, k))]
    edges = _deduplicate(edges)
    if diverging:
        edges = _symmetric(edges)
    count = len(edges) - 1
    colours = palette_colours(palette, count)
    # edges are rounded to 6 decimals: the maximum may lie a hair above the last one and
    # still belongs to the last class
    assigned = np.minimum(np.searchsorted(np.array(edges[1:]), data, side="left"), count - 1)
    counts = [int(np.sum(assigned == i)) for i in range(count)]
    return Classes(method, palette, edges, colours, counts)


def _bins(data: np.ndarray, method: str, k: int) -> np.ndarray:
    if method == "quantiles":
        return np.asarray(mapclassify.Quantiles(data, k=k).bins)
    if method == "equal_interval":
        return np.asarray(mapclassify.EqualInterval(data, k=k).bins)
    if method == "fisher_jenks":
        return np.asarray(mapclassify.FisherJenks(data, k=k).bins)
    # Natural breaks is randomised; a fixed seed keeps the legend stable between requests.
    np.random.seed(0)
    return np.asarray(mapclassify.NaturalBreaks(data, k=k, initial=5).bins)


def _deduplicate(edges: list[float]) -> list[float]:
    unique: list[float] = []
    for edge in edges:
        rounded = round(edge, 6)
        if not unique or rounded > unique[-1]:
            unique.append(rounded)
    return unique if len(unique) >= 2 else [unique[0], unique[0]]


def _symmetric(edges: list[float]) -> list[float]:
    # A change map reads best when zero sits on a class edge: keep it as one.
    if edges[0] < 0 < edges[-1] and 0.0 not in edges:
        edges = sorted([*edges, 0.0])
    return edges
