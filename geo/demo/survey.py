"""Survey-like tables of the demo region: indicators, observations and community priorities.

Values come from a per-village model on the logit scale: a base rate, loadings on the village's
exposure (flood, drought, conflict, remoteness) and a subgroup gap that may narrow or widen
between the baseline and the follow-up. Observed values are binomial draws from realistic
sample sizes, so small subgroups are both noisy and small enough to be suppressed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from geo.demo.admin import AdminUnits
from geo.demo.events import locate
from geo.demo.landscape import Landscape, to_km

BASELINE, FOLLOW_UP = "2024", "2026"
PERIODS = (BASELINE, FOLLOW_UP)
SUBGROUPS = ("all", "sex=female", "sex=male", "age=15-24", "disability=yes", "status=migrant",
             "disability=yes;sex=female")
SHARE_SUBGROUPS = ("sex=female", "age=0-14", "age=15-24", "age=65+", "disability=yes",
                   "status=migrant")
NEEDS = ("waste collection", "bread quality", "health care", "unemployment", "drinking water",
         "school transport", "street lighting", "flood protection")
N_PRIORITY_VILLAGES = 20
BOOSTER = 2.5  # over-sampling factor of the disability and migrant subgroups
SURVEY_DESIGN_EFFECT = 1.5


@dataclass(frozen=True)
class Indicator:
    """An indicator's metadata and the parameters of its synthetic model."""

    code: str
    name: str
    dimension: str
    polarity: str
    cutoff: float | None
    unit: str
    target: float | None
    base: float = 0.0  # typical value (percent) in an average village at baseline
    loadings: dict[str, float] = field(default_factory=dict)  # logit change per z of a driver
    trend: float = 0.0  # logit change from baseline to follow-up
    frame: str = "persons"  # "children": measured on under-fives only


INDICATORS: tuple[Indicator, ...] = (
    Indicator("poverty_rate", "Households below the national poverty line", "economic",
              "higher_is_worse", 30, "percent", 20, 27, {"deprivation": 0.45}, -0.10),
    Indicator("unemployment", "Unemployment rate, labour force aged 15+", "economic",
              "higher_is_worse", 20, "percent", 12, 17,
              {"deprivation": 0.3, "conflict": 0.2}, 0.0),
    Indicator("food_insecurity", "Households with moderate or severe food insecurity (FIES)",
              "food", "higher_is_worse", 25, "percent", 15, 21,
              {"drought": 0.35, "flood": 0.25, "deprivation": 0.2}, 0.05),
    Indicator("stunting", "Children under 5 who are stunted", "health", "higher_is_worse", 20,
              "percent", 12, 15, {"deprivation": 0.3, "remote": 0.2}, -0.08, "children"),
    Indicator("school_attendance", "Net school attendance, ages 6-17", "education",
              "higher_is_better", 85, "percent", 95, 89,
              {"deprivation": -0.4, "remote": -0.2, "conflict": -0.25}, 0.10),
    Indicator("safe_water_access", "Households with safely managed drinking water",
              "infrastructure", "higher_is_better", 80, "percent", 95, 81,
              {"remote": -0.5, "flood": -0.3}, 0.10),
    Indicator("waste_collection", "Households with regular solid-waste collection",
              "environmental", "higher_is_better", 60, "percent", 80, 50,
              {"remote": -0.5, "urban": 0.9, "deprivation": -0.2}, 0.05),
    Indicator("violence_experienced", "Persons who experienced violence in the past 12 months",
              "personal", "higher_is_worse", 10, "percent", 5, 6, {"conflict": 0.6}, 0.0),
    Indicator("trust_in_local_institutions", "Persons who trust their local authorities",
              "political", "higher_is_better", 50, "percent", 65, 52,
              {"conflict": -0.4, "deprivation": -0.2}, -0.05),
)
POPULATION_SHARE = Indicator(
    "population_share", "Share of the village population in a subgroup (to split counts)",
    "community", "higher_is_worse", None, "share", None,
)

# Subgroup gaps on the logit scale, (baseline, follow-up); positive = worse off.
GAPS: dict[str, dict[str, tuple[float, float]]] = {
    "sex=female": {"unemployment": (0.6, 0.4), "school_attendance": (0.35, 0.1),
                   "violence_experienced": (0.4, 0.55), "trust_in_local_institutions": (0.2, 0.25),
                   "poverty_rate": (0.15, 0.15), "food_insecurity": (0.1, 0.1)},
    "age=15-24": {"unemployment": (0.8, 1.0), "school_attendance": (0.6, 0.6),
                  "violence_experienced": (0.25, 0.3),
                  "trust_in_local_institutions": (0.4, 0.55)},
    "disability=yes": {"poverty_rate": (0.5, 0.6), "unemployment": (0.9, 1.1),
                       "school_attendance": (0.9, 0.55), "safe_water_access": (0.2, 0.2),
                       "food_insecurity": (0.3, 0.35), "violence_experienced": (0.35, 0.35),
                       "stunting": (0.2, 0.2), "trust_in_local_institutions": (0.3, 0.3)},
    "status=migrant": {"poverty_rate": (0.6, 0.8), "food_insecurity": (0.5, 0.75),
                       "school_attendance": (0.7, 0.4), "safe_water_access": (0.4, 0.3),
                       "trust_in_local_institutions": (0.5, 0.5),
                       "violence_experienced": (0.3, 0.35), "unemployment": (0.4, 0.3),
                       "stunting": (0.3, 0.3), "waste_collection": (0.2, 0.2)},
}
# Stunting is measured on under-fives: a youth (15-24) value would be meaningless.
SKIPPED = {("stunting", "age=15-24")}


@dataclass(frozen=True)
class VillageContext:
    """Per-village drivers of the synthetic indicators (z-scores unless stated)."""

    population: np.ndarray  # people (raster sum)
    drivers: dict[str, dict[str, np.ndarray]]  # period -> driver name -> z-score
    flood_share: np.ndarray  # share of people in cells at or above the flood threshold
    shares: dict[str, dict[str, np.ndarray]]  # period -> subgroup -> population share


def _z(values: np.ndarray) -> np.ndarray:
    """Return values standardised to zero mean and unit standard deviation."""
    spread = values.std()
    return (values - values.mean()) / (spread if spread > 0 else 1.0)


def _conflict_drivers(admin: AdminUnits, events: pd.DataFrame,
                      population: np.ndarray) -> dict[str, np.ndarray]:
    """Return per period the conflict z-score: district rate per 10k and village event counts."""
    village = locate(admin, events["longitude"].to_numpy(), events["latitude"].to_numpy())
    dates = pd.to_datetime(events["event_date"])
    district_people = np.bincount(admin.village_district, weights=population)
    drivers = {}
    # The survey asks about the past twelve months, so each period sees the year before it.
    windows = {BASELINE: ("2023-10-01", "2024-09-30"), FOLLOW_UP: ("2025-10-01", "2026-09-30")}
    for period, (start, end) in windows.items():
        in_window = ((dates >= start) & (dates <= end)).to_numpy()
        per_village = np.bincount(village[in_window], minlength=len(admin.village_code))
        per_district = np.bincount(admin.village_district, weights=per_village)
        rate = per_district / district_people * 1e4
        drivers[period] = _z(0.6 * _z(np.log1p(rate[admin.village_district]))
                             + 0.4 * _z(np.log1p(per_village)))
    return drivers


def _population_shares(rng: np.random.Generator, admin: AdminUnits,
                       conflict: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Return per period each village's subgroup shares of its population."""
    n = len(admin.village_code)
    urban = admin.village_town >= 0
    district_migrants = rng.uniform(0.5, 1.5, size=len(admin.district_code))
    migrant = np.where(urban, rng.uniform(0.08, 0.3, n), rng.uniform(0.01, 0.1, n))
    base = {
        "sex=female": rng.uniform(0.485, 0.52, n),
        "age=0-14": np.where(urban, rng.uniform(0.28, 0.34, n), rng.uniform(0.32, 0.40, n)),
        "age=15-24": rng.uniform(0.17, 0.22, n),
        "age=65+": rng.uniform(0.04, 0.08, n),
        "disability=yes": np.clip(0.09 + 0.015 * conflict + rng.normal(0, 0.015, n), 0.04, 0.2),
        "status=migrant": np.clip(migrant * district_migrants[admin.village_district], 0.005, 0.4),
    }
    follow = dict(base)
    # Displacement: people leave conflict areas and settle as migrants in the towns.
    follow["status=migrant"] = np.clip(base["status=migrant"] * (1.15 + 0.2 * urban), 0.005, 0.45)
    return {BASELINE: base, FOLLOW_UP: follow}


def village_context(
    rng: np.random.Generator, land: Landscape, admin: AdminUnits, village_ids: np.ndarray,
    people: np.ndarray, hazards: dict[str, np.ndarray], events: pd.DataFrame,
) -> VillageContext:
    """Return each village's population, exposure drivers and subgroup shares."""
    size = len(admin.village_code) + 1
    population = np.bincount(village_ids.ravel(), weights=people.ravel(), minlength=size)[1:]

    def people_weighted(mask_or_values: np.ndarray) -> np.ndarray:
        sums = np.bincount(village_ids.ravel(), weights=(people * mask_or_values).ravel(),
                           minlength=size)[1:]
        return sums / np.maximum(population, 1.0)

    flood_share = people_weighted(hazards["flood"] >= 0.5)
    town_lon = np.array([t.lon for t in land.towns])
    town_lat = np.array([t.lat for t in land.towns])
    remote_km = np.min(to_km(admin.village_lon[:, None] - town_lon[None, :],
                             admin.village_lat[:, None] - town_lat[None, :]), axis=1)
    conflict = _conflict_drivers(admin, events, population)
    static = {
        "flood": _z(flood_share + 0.5 * people_weighted(hazards["landslide"] >= 0.6)),
        "drought": _z(people_weighted(hazards["drought"])),
        "remote": _z(np.sqrt(remote_km)),
        "urban": _z((admin.village_town >= 0).astype(float)),
    }
    district_effect = rng.normal(0.0, 0.3, size=len(admin.district_code))
    village_effect = rng.normal(0.0, 0.4, size=size - 1)
    drivers = {}
    for period in PERIODS:
        deprivation = (0.8 * static["flood"] + 0.9 * conflict[period] + 0.5 * static["remote"]
                       + 0.3 * static["drought"] + district_effect[admin.village_district]
                       + village_effect + rng.normal(0.0, 0.1, size=size - 1))
        drivers[period] = {**static, "conflict": conflict[period], "deprivation": _z(deprivation)}
    shares = _population_shares(rng, admin, conflict[BASELINE])
    return VillageContext(population, drivers, flood_share, shares)


def _logit(p: np.ndarray | float) -> np.ndarray:
    """Return the log-odds of a probability."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    """Return the probability of a log-odds."""
    return 1.0 / (1.0 + np.exp(-x))


def _gap(subgroup: str, indicator: str, period: str) -> float:
    """Return how much worse off (logit) the subgroup is than the village as a whole."""
    late = period == FOLLOW_UP
    if subgroup == "sex=male":
        return -0.8 * _gap("sex=female", indicator, period)  # the other half balances it
    if subgroup == "disability=yes;sex=female":  # intersections compound, a little extra
        return _gap("disability=yes", indicator, period) + _gap("sex=female", indicator,
                                                                period) + 0.15
    default = {"sex=female": 0.0, "age=15-24": 0.05}.get(subgroup, 0.1)
    return GAPS.get(subgroup, {}).get(indicator, (default, default))[late]


def true_rates(context: VillageContext, indicator: Indicator, period: str,
               village_effect: np.ndarray | float) -> np.ndarray:
    """Return the modelled village-wide rate (0-1) of an indicator in a period."""
    drivers = context.drivers[period]
    logit = _logit(indicator.base / 100.0) + village_effect
    for driver, loading in indicator.loadings.items():
        logit = logit + loading * drivers[driver]
    if period == FOLLOW_UP:
        logit = logit + indicator.trend
    return _expit(logit)


def _respondents(rng: np.random.Generator, context: VillageContext,
                 period: str) -> dict[str, np.ndarray]:
    """Return per subgroup how many people the village survey reached."""
    total = np.clip(np.round(2.0 * np.sqrt(context.population)
                             * rng.lognormal(0.0, 0.2, context.population.size)), 25, 600)
    total = total.astype(int)
    shares = context.shares[period]
    female = rng.binomial(total, shares["sex=female"])
    # Booster samples: the survey over-samples people with disabilities and migrants (as
    # LNOB-minded surveys do), yet in small villages their cells stay small.
    disabled = rng.binomial(total, np.minimum(1.0, BOOSTER * shares["disability=yes"]))
    migrants = rng.binomial(total, np.minimum(1.0, BOOSTER * shares["status=migrant"]))
    return {
        "all": total, "sex=female": female, "sex=male": total - female,
        "age=15-24": rng.binomial(total, shares["age=15-24"]), "disability=yes": disabled,
        "status=migrant": migrants,
        "disability=yes;sex=female": rng.binomial(disabled, shares["sex=female"]),
    }


def _indicator_rows(rng: np.random.Generator, context: VillageContext, codes: list[str],
                    indicator: Indicator, respondents: dict[str, dict[str, np.ndarray]],
                    village_effect: np.ndarray) -> list[pd.DataFrame]:
    """Return the observation frames of one indicator, every period and subgroup."""
    direction = 1.0 if indicator.polarity == "higher_is_worse" else -1.0
    frames = []
    for period in PERIODS:
        village_rate = _logit(true_rates(context, indicator, period, village_effect))
        source = f"Wadi Noor Household Survey {period} (synthetic)"
        for subgroup in SUBGROUPS:
            if (indicator.code, subgroup) in SKIPPED:
                continue
            reached = respondents[period][subgroup]
            # Respondents stand for households: about one under-five is measured in every
            # second one; other items are answered by 96 % of them.
            share = 0.5 if indicator.frame == "children" else 0.96
            sample = rng.binomial(reached, share)
            rate = _expit(village_rate + direction * _gap(subgroup, indicator.code, period))
            value = 100.0 * rng.binomial(sample, rate) / np.maximum(sample, 1)
            keep = sample > 0  # nobody asked, no observation
            frames.append(pd.DataFrame({
                "locality_code": np.array(codes)[keep], "indicator": indicator.code,
                "period": period, "subgroup": subgroup, "value": np.round(value[keep], 1),
                "sample_size": sample[keep], "source": source,
            }))
    return frames


def _share_rows(context: VillageContext, codes: list[str]) -> list[pd.DataFrame]:
    """Return population-share observations; sample_size is the subgroup's head count."""
    frames = []
    for period in PERIODS:
        for subgroup in SHARE_SUBGROUPS:
            share = context.shares[period][subgroup]
            frames.append(pd.DataFrame({
                "locality_code": codes, "indicator": POPULATION_SHARE.code, "period": period,
                "subgroup": subgroup, "value": np.round(share, 4),
                "sample_size": np.round(share * context.population).astype(int),
                "source": f"Population estimates {period} (synthetic)",
            }))
    return frames


def observations(rng: np.random.Generator, context: VillageContext,
                 admin: AdminUnits) -> pd.DataFrame:
    """Return village observations in long form for the baseline and the follow-up."""
    codes = admin.village_code
    respondents = {period: _respondents(rng, context, period) for period in PERIODS}
    frames = []
    for indicator in INDICATORS:
        village_effect = rng.normal(0.0, 0.15, size=len(codes))
        frames += _indicator_rows(rng, context, codes, indicator, respondents, village_effect)
    frames += _share_rows(context, codes)
    table = pd.concat(frames, ignore_index=True)
    subgroup_order: dict[str, int] = {}
    for subgroup in SUBGROUPS + SHARE_SUBGROUPS:
        subgroup_order.setdefault(subgroup, len(subgroup_order))
    table["_order"] = table["subgroup"].map(subgroup_order)
    table = table.sort_values(["locality_code", "indicator", "period", "_order"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def indicators() -> pd.DataFrame:
    """Return the indicator metadata table."""
    return pd.DataFrame([
        {"code": i.code, "name": i.name, "dimension": i.dimension, "polarity": i.polarity,
         "cutoff": i.cutoff, "unit": i.unit, "target": i.target,
         # a two-stage cluster survey: answers within a village resemble each other
         "design_effect": None if i is POPULATION_SHARE else SURVEY_DESIGN_EFFECT}
        for i in (*INDICATORS, POPULATION_SHARE)
    ])


def _need_weights(context: VillageContext, follow_up: dict[str, np.ndarray]) -> np.ndarray:
    """Return per village and need how pressing the need is (rows villages, columns NEEDS)."""
    drivers = context.drivers[FOLLOW_UP]
    remote = np.clip(drivers["remote"], 0, None)
    columns = [
        0.5 + 3.0 * (1 - follow_up["waste_collection"]),
        0.6 + 4.0 * follow_up["food_insecurity"],
        0.8 + 4.0 * follow_up["stunting"] + 0.3 * remote,
        0.8 + 5.0 * follow_up["unemployment"],
        0.3 + 5.0 * (1 - follow_up["safe_water_access"]),
        0.2 + 0.6 * remote + 4.0 * (1 - follow_up["school_attendance"]),
        0.4 + 6.0 * follow_up["violence_experienced"] + 0.3 * (drivers["urban"] > 0),
        0.1 + 6.0 * context.flood_share,
    ]
    return np.column_stack(columns)


def priorities(rng: np.random.Generator, context: VillageContext,
               admin: AdminUnits) -> pd.DataFrame:
    """Return community forum rankings of needs for ~20 villages, led by their evidence."""
    follow_up = {i.code: true_rates(context, i, FOLLOW_UP, 0.0) for i in INDICATORS}
    weights = _need_weights(context, follow_up)
    chosen = rng.choice(len(admin.village_code), size=N_PRIORITY_VILLAGES, replace=False,
                        p=context.population ** 0.3 / (context.population ** 0.3).sum())
    first_forum = dt.date(2025, 3, 1)
    rows = []
    for village in sorted(chosen, key=lambda v: admin.village_code[v]):
        forum = first_forum + dt.timedelta(days=int(rng.integers(0, 480)))
        # Gumbel-max trick: a weighted random ranking without replacement.
        keys = np.log(weights[village]) + rng.gumbel(size=len(NEEDS))
        ranked = np.argsort(-keys)[: int(rng.integers(3, 6))]
        rows += [{"locality_code": admin.village_code[village], "forum_date": forum.isoformat(),
                  "rank": rank, "need": NEEDS[need]} for rank, need in enumerate(ranked, 1)]
    return pd.DataFrame(rows)
