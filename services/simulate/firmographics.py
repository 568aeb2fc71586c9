"""Who the simulated accounts and contacts are, and how that sways a deal's outcome.

Every account gets an industry, a segment (``smb``, ``mid_market``, ``enterprise``), an
``employees`` band inside its segment and a country; every contact a persona: ``title``,
``seniority`` and ``department``. All values are short slugs or labels (schema: at most 200
characters each).

How the outcome depends on them: a deal's *fit* is the sum of the log-odds below for its
account's industry and segment and its primary contact's seniority. Among the decided deals
the won ones are the ``won`` deals with the highest ``fit + L`` (``L`` standard logistic noise,
one draw per deal), so P(won | decided) = σ(fit − t), with the cut-off ``t`` set by the run's
exact won/lost counts. ``country``, ``employees`` (beyond its segment) and ``department`` carry
no signal of their own: a fit model should learn about zero for them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

# industry: (weight, log-odds of winning, words for company names)
INDUSTRIES: dict[str, tuple[int, float, tuple[str, ...]]] = {
    "software": (24, 0.7, ("Software", "Labs", "Cloud", "Systems", "Analytics")),
    "fintech": (12, 0.4, ("Pay", "Capital", "Ledger", "Finance")),
    "healthcare": (12, 0.0, ("Health", "Care", "Medical", "Bio")),
    "professional_services": (12, 0.0, ("Partners", "Consulting", "Advisory", "Group")),
    "manufacturing": (14, -0.2, ("Industries", "Manufacturing", "Works", "Components")),
    "education": (8, -0.4, ("Learning", "Academy", "Education")),
    "retail": (18, -0.7, ("Retail", "Stores", "Outfitters", "Market")),
}
# segment: (weight, log-odds of winning, employee bands, deal size factor)
SEGMENTS: dict[str, tuple[int, float, tuple[str, ...], float]] = {
    "smb": (45, -0.6, ("1-10", "11-50"), 0.5),
    "mid_market": (35, 0.2, ("51-200", "201-500"), 1.1),
    "enterprise": (20, 0.7, ("501-1000", "1001-5000", "5001+"), 2.5),
}
EMPLOYEE_BANDS = ("1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5001+")
COUNTRIES = {"US": 40, "GB": 14, "DE": 12, "CA": 7, "FR": 7, "NL": 5, "AU": 5, "SE": 4, "ES": 3}
NAME_WORDS = (
    "Acme", "Northwind", "Blue Harbor", "Summit", "Brightline", "Ironwood", "Lumen", "Crescent",
    "Redwood", "Atlas", "Silverpeak", "Meridian", "Oakridge", "Kestrel", "Granite", "Helix",
    "Evergreen", "Cobalt", "Pioneer", "Vantage", "Juniper", "Harbor Point", "Nimbus", "Sterling",
)  # fmt: skip

# (title, seniority, department, weight among the contacts a journey meets)
PERSONAS: tuple[tuple[str, str, str, int], ...] = (
    ("CEO", "c_level", "executive", 2),
    ("CFO", "c_level", "finance", 3),
    ("CMO", "c_level", "marketing", 3),
    ("Chief Revenue Officer", "c_level", "sales", 2),
    ("VP Marketing", "vp", "marketing", 6),
    ("VP Sales", "vp", "sales", 4),
    ("VP Finance", "vp", "finance", 3),
    ("Director of Demand Generation", "director", "marketing", 8),
    ("Director of Revenue Operations", "director", "operations", 7),
    ("Head of Growth", "director", "marketing", 5),
    ("Marketing Manager", "manager", "marketing", 12),
    ("Sales Manager", "manager", "sales", 7),
    ("RevOps Manager", "manager", "operations", 7),
    ("Finance Manager", "manager", "finance", 5),
    ("Marketing Analyst", "staff", "marketing", 9),
    ("Data Analyst", "staff", "operations", 7),
    ("Marketing Coordinator", "staff", "marketing", 6),
    ("Sales Development Rep", "staff", "sales", 4),
)
SENIORITY_FIT = {"c_level": 0.5, "vp": 0.5, "director": 0.25, "manager": 0.0, "staff": -0.5}
SENIORITY_ORDER = ("staff", "manager", "director", "vp", "c_level")


@dataclass(frozen=True)
class Firmographics:
    """An account's name and attributes."""

    name: str
    industry: str
    segment: str
    employees: str
    country: str

    def attributes(self) -> dict[str, str]:
        """Return the account's attributes as canonical ``attributes``."""
        return {
            "industry": self.industry,
            "segment": self.segment,
            "employees": self.employees,
            "country": self.country,
        }

    @property
    def size_factor(self) -> float:
        """How much larger than a typical deal this segment's deals are."""
        return SEGMENTS[self.segment][3]


@dataclass(frozen=True)
class Persona:
    """A contact's title, seniority and department."""

    title: str
    seniority: str
    department: str

    def attributes(self) -> dict[str, str]:
        """Return the contact's attributes as canonical ``attributes``."""
        return {"title": self.title, "seniority": self.seniority, "department": self.department}


def draw_account(rng: random.Random) -> Firmographics:
    """Draw an account's firmographics."""
    industry = _pick(rng, {slug: row[0] for slug, row in INDUSTRIES.items()})
    segment = _pick(rng, {slug: row[0] for slug, row in SEGMENTS.items()})
    words = INDUSTRIES[industry][2]
    name = f"{rng.choice(NAME_WORDS)} {rng.choice(words)}"
    return Firmographics(
        name=name,
        industry=industry,
        segment=segment,
        employees=rng.choice(SEGMENTS[segment][2]),
        country=_pick(rng, COUNTRIES),
    )


def draw_persona(rng: random.Random) -> Persona:
    """Draw a contact's persona."""
    title, seniority, department, _ = rng.choices(PERSONAS, weights=[p[3] for p in PERSONAS])[0]
    return Persona(title, seniority, department)


def promoted(persona: Persona) -> Persona | None:
    """Return the persona one seniority up in the same department (None at the top)."""
    rank = SENIORITY_ORDER.index(persona.seniority)
    for title, seniority, department, _ in PERSONAS:
        if department == persona.department and SENIORITY_ORDER.index(seniority) == rank + 1:
            return Persona(title, seniority, department)
    return None


def grown(employees: str) -> str:
    """Return the next employee band (the largest stays)."""
    index = EMPLOYEE_BANDS.index(employees)
    return EMPLOYEE_BANDS[min(index + 1, len(EMPLOYEE_BANDS) - 1)]


def fit(account: Firmographics, primary: Persona) -> float:
    """Return a deal's log-odds shift of winning from its account and primary contact."""
    return (
        INDUSTRIES[account.industry][1]
        + SEGMENTS[account.segment][1]
        + SENIORITY_FIT[primary.seniority]
    )


def pick_winners(rng: random.Random, fits: Sequence[float], won: int) -> set[int]:
    """Return the indices of the ``won`` highest ``fit + logistic noise`` (ties: lower index)."""
    keyed = []
    for index, value in enumerate(fits):
        u = min(max(rng.random(), 1e-12), 1 - 1e-12)
        keyed.append((-(value + math.log(u / (1 - u))), index))
    return {index for _, index in sorted(keyed)[:won]}


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]
