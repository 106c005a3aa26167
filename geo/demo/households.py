"""Household microdata of the demo: a person-level survey in a sample of villages.

For the Alkire-Foster measures. A deterministic sample of villages (large and small, so that
some subgroup cells are small enough to be withheld and some too noisy to be reliable) gets
households of one to seven people with sex, age band, disability and migrant status, and
one 0/1 answer per indicator. Deprivations come from each village's modelled rate (the same
model as the aggregate survey, `geo.demo.survey`), shifted for people with disabilities and
migrants, and tied together within a household by a shared factor, so that deprivations
bunch in the same households as they do in real surveys. The follow-up round narrows some
gaps (migrants' food insecurity) and leaves others, so both "gap narrowed" and
"no clear change" show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from geo.demo.admin import AdminUnits
from geo.demo.survey import FOLLOW_UP, INDICATORS, PERIODS, VillageContext, true_rates

# Household-level questions (one answer for the whole household) and person-level ones.
HOUSEHOLD_ITEMS = ("poverty_rate", "food_insecurity", "safe_water_access", "school_attendance")
PERSON_ITEMS = ("violence_experienced",)
N_VILLAGES = 24
AGE_BANDS = ("0-14", "15-24", "25-64", "65+")
AGE_SHARES = (0.34, 0.2, 0.4, 0.06)
# Logit shifts: (baseline, follow-up); positive = more often deprived.
DISABILITY_SHIFT = {"poverty_rate": (0.6, 0.6), "food_insecurity": (0.5, 0.5),
                    "school_attendance": (0.9, 0.5), "violence_experienced": (0.4, 0.4),
                    "safe_water_access": (0.2, 0.2)}
MIGRANT_SHIFT = {"poverty_rate": (0.7, 0.6), "food_insecurity": (0.9, 0.2),
                 "safe_water_access": (0.6, 0.5), "school_attendance": (0.6, 0.5),
                 "violence_experienced": (0.3, 0.3)}


def sample_villages(rng: np.random.Generator, context: VillageContext) -> np.ndarray:
    """Return the indices of the surveyed villages: the largest few and a spread of others."""
    order = np.argsort(-context.population)
    largest = order[:6]
    rest = rng.choice(order[6:], size=N_VILLAGES - len(largest), replace=False)
    return np.sort(np.concatenate([largest, rest]))


def households(rng: np.random.Generator, context: VillageContext,
               admin: AdminUnits) -> pd.DataFrame:
    """Return the person rows of the household survey, both rounds, in a fixed order."""
    chosen = sample_villages(rng, context)
    indicators = {i.code: i for i in INDICATORS}
    frames = []
    for period in PERIODS:
        rates = {code: true_rates(context, indicators[code], period, 0.0)
                 for code in (*HOUSEHOLD_ITEMS, *PERSON_ITEMS)}
        for village in chosen:
            frames.append(_village(rng, context, admin, village, period, rates))
    return pd.concat(frames, ignore_index=True)


def _village(rng: np.random.Generator, context: VillageContext, admin: AdminUnits,
             village: int, period: str, rates: dict[str, np.ndarray]) -> pd.DataFrame:
    late = period == FOLLOW_UP
    population = float(context.population[village])
    n_households = int(np.clip(round(1.5 * np.sqrt(population)), 8, 70))
    sizes = rng.integers(1, 8, size=n_households)
    code = admin.village_code[village]
    migrant_share = float(context.shares[period]["status=migrant"][village])
    disability_share = float(context.shares[period]["disability=yes"][village])
    rows = []
    for household, size in enumerate(sizes, start=1):
        migrant = rng.random() < min(0.9, 2.0 * migrant_share)
        shared = rng.normal(0.0, 0.8)  # what the household's members have in common
        ages = rng.choice(AGE_BANDS, size=size, p=AGE_SHARES)
        disabled = rng.random(size) < 1.5 * disability_share
        household_shift = (MIGRANT_SHIFT if migrant else {})
        answers = {}
        for item in HOUSEHOLD_ITEMS:
            shift = shared + household_shift.get(item, (0.0, 0.0))[late]
            shift += DISABILITY_SHIFT[item][late] * disabled.any() * 0.6
            answers[item] = _draw(rng, rates[item][village], shift, item)
        weight = population / max(1, int(sizes.sum())) * rng.uniform(0.85, 1.15)
        for person in range(size):
            row = {"locality_code": code, "period": period,
                   "household_id": f"{code}-{period}-{household:03d}",
                   "person_id": f"{person + 1}", "weight": round(weight, 3),
                   "sex": "female" if rng.random() < 0.5 else "male", "age": ages[person],
                   "disability": "yes" if disabled[person] else "no",
                   "status": "migrant" if migrant else "resident", **answers}
            for item in PERSON_ITEMS:
                shift = 0.5 * shared + household_shift.get(item, (0.0, 0.0))[late]
                shift += DISABILITY_SHIFT[item][late] * disabled[person]
                row[item] = _draw(rng, rates[item][village], shift, item)
            rows.append(row)
    return pd.DataFrame(rows)


def _draw(rng: np.random.Generator, rate: float, shift: float, item: str) -> int:
    """Return one 0/1 answer: 1 = counted in the indicator's numerator."""
    indicator = next(i for i in INDICATORS if i.code == item)
    # The survey model's rate is of the numerator; for a higher-is-better indicator a
    # positive shift (worse off) lowers it.
    direction = 1.0 if indicator.polarity == "higher_is_worse" else -1.0
    logit = np.log(rate / (1 - rate)) + direction * shift
    return int(rng.random() < 1.0 / (1.0 + np.exp(-logit)))
