"""The institution-type vocabulary and the table mapping source labels onto it.

Labels are compared lower-cased with accents and punctuation folded. An exact entry wins;
otherwise the keyword rules are tried in order (the first match wins); otherwise `other`.

| source label (examples)                                        | type                 |
|----------------------------------------------------------------|----------------------|
| Hospital, District/Provincial/Referral Hospital, Hôpital ...,  | hospital             |
| RS, RSU, RSUD, RSIA, RS Khusus (Indonesian hospitals), OSM     |                      |
| amenity=hospital                                               |                      |
| Health Centre/Center, Centre de Santé, Puskesmas ...           | health_centre        |
| Health Post, Poste de Santé, Dispensary, Bidan (midwife post)  | health_post          |
| Clinic, Klinik ..., Clinique, Praktek Mandiri, OSM doctors,    | clinic               |
| dentist                                                        |                      |
| Pharmacy, Pharmacie, Apotek, Chemist                           | pharmacy             |
| Primary school, École primaire, SD                             | school_primary       |
| Secondary/High school, Lycée, Collège, SMP, SMA                | school_secondary     |
| Vocational/Technical school, TVET, SMK                         | school_vocational    |
| NGO, Association, LSM                                          | ngo                  |
| Youth centre/center, Maison des jeunes                         | youth_centre         |
| Townhall, Mairie, Kantor Kelurahan/Kecamatan, Local government | local_administration |
| Water point, Borehole, Well, Drinking water, Water tap         | water_point          |
| Shelter, Refuge, Safe house                                    | shelter              |

| School, École, Sekolah (no level given)                        | school               |

A plain `school` (OSM `amenity=school`, a file that says only "school") has no level: it
is typed `school`, which the access analysis counts in the school family with the typed
levels. Types are grouped into the service families that access is computed for
(`INSTITUTION_FAMILIES`); the other types are kept in the inventory but counted by no
access measure, and the ingest and run summaries say so.
"""

from __future__ import annotations

import re
import unicodedata

INSTITUTION_TYPES = (
    "health_centre",
    "hospital",
    "clinic",
    "health_post",
    "pharmacy",
    "school_primary",
    "school_secondary",
    "school_vocational",
    "school",
    "ngo",
    "youth_centre",
    "local_administration",
    "water_point",
    "shelter",
    "other",
)

EXACT: dict[str, str] = {
    "rs": "hospital",
    "rsu": "hospital",
    "rsud": "hospital",
    "rsia": "hospital",
    "rsk": "hospital",
    "rs khusus": "hospital",
    "bidan": "health_post",
    "doctors": "clinic",
    "dentist": "clinic",
    "praktek mandiri": "clinic",
    "sd": "school_primary",
    "smp": "school_secondary",
    "sma": "school_secondary",
    "smk": "school_vocational",
    "townhall": "local_administration",
    "drinking water": "water_point",
    "lsm": "ngo",
}

KEYWORD_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"\bhospital|\bhopital|\brumah sakit|^rs[a-z]*\b", "hospital"),
        (r"health (centre|center)|centre de sante|centro de saude|puskesmas", "health_centre"),
        (r"health post|poste de sante|dispensary|\bbidan\b|posyandu", "health_post"),
        (r"clinic|klinik|clinique|praktek|doctor", "clinic"),
        (r"pharmac|apotek|chemist|drugstore", "pharmacy"),
        (r"vocational|technical|tvet|\bsmk\b", "school_vocational"),
        (r"secondary|high school|lycee|college|\bsmp\b|\bsma\b", "school_secondary"),
        (r"primary school|ecole primaire|elementary|\bsd\b", "school_primary"),
        (r"\bschool\b|\becole\b|\bsekolah\b|\bescuela\b|\bescola\b", "school"),
        (r"\bngo\b|non.governmental|association", "ngo"),
        (r"youth|maison des jeunes", "youth_centre"),
        (r"town ?hall|mairie|kantor (kelurahan|kecamatan|desa)|local (government|admin)",
         "local_administration"),
        (r"water|borehole|\bwell\b|standpipe|\btap\b", "water_point"),
        (r"shelter|refuge|safe ?house", "shelter"),
    )
)


# Service families: the types each access measure counts (access.<family>.<measure>).
INSTITUTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "health": ("health_centre", "hospital", "clinic", "health_post"),
    "school": ("school", "school_primary", "school_secondary", "school_vocational"),
}


def family_of(kind: str) -> str | None:
    """Return the service family an institution type counts in, or None."""
    for family, kinds in INSTITUTION_FAMILIES.items():
        if kind in kinds:
            return family
    return None


def type_summary(counts: dict[str, int], unmapped: dict[str, int] | None = None
                 ) -> dict[str, object]:
    """Return per family the count, and the types (and unmapped labels) no family counts."""
    families = {family: sum(counts.get(kind, 0) for kind in kinds)
                for family, kinds in INSTITUTION_FAMILIES.items()}
    uncounted = {kind: n for kind, n in sorted(counts.items())
                 if n and family_of(kind) is None}
    summary: dict[str, object] = {"by_family": families, "not_counted_by_access": uncounted}
    if unmapped:
        summary["unmapped_labels"] = dict(unmapped)
    return summary


def fold(label: str) -> str:
    """Return a label lower-cased, accents removed and punctuation turned into spaces."""
    decomposed = unicodedata.normalize("NFKD", label)
    ascii_text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_text.lower().replace("_", " ")).split())


def institution_type(label: str, overrides: dict[str, str] | None = None) -> str | None:
    """Return the vocabulary type for a source label, or None when nothing matches."""
    folded = fold(label)
    if overrides and folded in overrides:
        return overrides[folded]
    if folded.replace(" ", "_") in INSTITUTION_TYPES:
        return folded.replace(" ", "_")
    if folded in EXACT:
        return EXACT[folded]
    for pattern, kind in KEYWORD_RULES:
        if pattern.search(folded):
            return kind
    return None
