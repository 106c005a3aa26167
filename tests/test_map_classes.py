"""Class breaks and palettes of the map (pure functions, no database)."""

from __future__ import annotations

import pytest

from geo.errors import NotFoundError, ValidationError
from geo.read.map_classes import PALETTES, classify, integer_classes, palette_colours
from geo.read.map_scores import parse_score
from geo.read.run_cache import RunCache


def test_quantiles_split_values_evenly_with_light_to_dark_colours() -> None:
    values = [float(v) for v in range(100)]
    result = classify(values, "quantiles", 5, "YlOrRd")
    assert result.breaks[0] == 0.0 and result.breaks[-1] == 99.0
    assert result.counts == [20, 20, 20, 20, 20]
    assert result.colours == palette_colours("YlOrRd", 5)
    assert result.colours[0] == "#ffffb2" and result.colours[-1] == "#bd0026"


def test_few_distinct_values_give_fewer_classes_not_empty_ones() -> None:
    result = classify([1.0, 1.0, 2.0, 2.0, None], "natural_breaks", 7, "viridis")
    assert len(result.colours) == len(result.breaks) - 1 == len(result.counts)
    assert sum(result.counts) == 4 and all(result.counts)


def test_a_change_map_keeps_zero_on_a_class_edge() -> None:
    result = classify([-3.0, -1.0, -0.5, 0.2, 0.7, 2.0, 4.0], "quantiles", 4, "PuOr",
                      diverging=True)
    assert 0.0 in result.breaks


def test_stressed_dimension_counts_get_one_class_per_count() -> None:
    result = integer_classes([0, 1, 1, 3, None], "YlOrRd")
    assert result.breaks == [-0.5, 0.0, 1.0, 2.0, 3.0]
    assert result.counts == [1, 2, 0, 1]


@pytest.mark.parametrize("palette", PALETTES)
def test_every_palette_gives_distinct_colours(palette: str) -> None:
    colours = palette_colours(palette, 7)
    assert len(set(colours)) == 7 and all(c.startswith("#") for c in colours)


def test_bad_requests_are_refused_in_words() -> None:
    with pytest.raises(ValidationError, match="unknown method"):
        classify([1.0, 2.0], "magic", 3, "YlOrRd")
    with pytest.raises(ValidationError, match="unknown palette"):
        palette_colours("rainbow", 3)
    with pytest.raises(NotFoundError, match="no values"):
        classify([None, None], "quantiles", 3, "YlOrRd")
    with pytest.raises(ValidationError, match="unknown score"):
        parse_score("composite; DROP TABLE x")


def test_run_cache_computes_once_and_forgets_the_oldest() -> None:
    cache = RunCache(size=2)
    calls: list[str] = []

    def compute(key: str) -> str:
        calls.append(key)
        return key.upper()

    assert cache.get("a", lambda: compute("a")) == "A"
    assert cache.get("a", lambda: compute("a")) == "A"
    cache.get("b", lambda: compute("b"))
    cache.get("c", lambda: compute("c"))  # evicts "a", the least recently used
    cache.get("a", lambda: compute("a"))
    assert calls == ["a", "b", "c", "a"]


def test_the_maximum_is_counted_when_edges_are_rounded() -> None:
    # Edges are rounded to 6 decimals; a maximum just above its rounded edge must still
    # fall in the last class (a run's composites are not rounded).
    from geo.read.map_classes import classify

    values = [0.1, 0.5, 0.9, 2.0, 3.3, 5.5812344999]
    for method in ("natural_breaks", "quantiles", "equal_interval", "fisher_jenks"):
        assert sum(classify(values, method, 3, "viridis").counts) == len(values), method
