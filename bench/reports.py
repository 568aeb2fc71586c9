"""Report latency and API memory: ``/v1/reports/roi``, ``/compare``, ``/influence``, 32 clients.

The projection the API reads (campaigns, costs, deals, touches, credits, deal attributions,
the models and two fit snapshots) is written straight into a fresh PostgreSQL database with
COPY, as the worker would leave it: N won deals closed over 2026, 40 campaigns over 8
channels, 3-17 touches a deal (10 on average; 3 % of deals have none, so some revenue is
unattributed), credits under all 12 models (the 10 built-ins, and markov and shapley frozen
at a fit), each deal's credits summing to its amount per model (``split_cents``). The read API
then runs as a real process (``closedloop api``) and wrk drives it over loopback with 32
connections, cycling over a mix of realistic queries (periods, groupings, models); a third
mix, ``roi_select``, asks ROI with filters (channel, campaign ids, sales- or marketing-sourced),
sorts and pages.

Figures per size and endpoint: the cost of a cache miss (each query of the mix once, one at
a time, right after a projection version bump), wrk's p50/p95/p99 and requests/s in the
steady state (the projection does not change during the run; full runs: the median of 3 at
the headline size), the same while real ``closedloop worker`` processes apply a live stream
of 1,000 simulated events/s to the same database (``_live``, after every steady run: each
committed batch changes the projection, as in production; ``bench.live`` says whether the
workers kept up and where the CPU went), and the API process's RSS (``VmRSS``, peak
``VmHWM``) after the load. Sizes: 1k, 10k and 100k won deals (about 10k, 100k and 1M
touches; ``--deals``); ``--quick``: 2,000 deals, one 2 s run each.

Time decay weights are computed in floating point here (the domain's exact ``Decimal`` powers
cost 1 ms a deal); they are still exact binary fractions split by ``split_cents``, so every
deal still sums to the cent.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text

from bench.common import make_key, memory_kib
from bench.live import live_stream
from services.attribution.deal_funnel import refresh_deal_funnel
from services.attribution.funnel_summary import RULES, summary_rows
from services.attribution.pipeline import PIPELINE_SNAPSHOT_KEY, snapshot_value
from services.attribution.registry import sync_builtin_models
from services.core.broker import free_port, wait_for_port
from services.core.db.deal_stages import fill_first_appearances
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.rollups import rebuild_rollups
from services.core.db.schema import SystemStateRow
from services.core.db.version import bump_projection_version, projection_version
from services.core.events import SIDE_EXITS
from services.core.settings import Settings
from services.domain import (
    AttributionModel,
    PositionalModel,
    Touch,
    assign_roles,
    builtin_models,
    model_weights,
    role_labels,
    split_cents,
)
from services.domain.datadriven import ChannelWeightModel
from services.domain.stages import Step, summarize
from services.simulate.catalog import DEAL_STAGES as SIMULATED_STAGES
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop

CHANNELS = (
    "paid_search",
    "paid_social",
    "display",
    "email",
    "webinar",
    "events",
    "organic",
    "referral",
)
CAMPAIGNS = [
    (f"camp-{c}-{k}", f"{c.replace('_', ' ').title()} {k}", c) for c in CHANNELS for k in range(5)
]
# Campaign popularity falls off like Zipf's law: a few campaigns carry most touches.
POPULARITY = [1 / (rank + 1) ** 0.8 for rank in range(len(CAMPAIGNS))]
YEAR = datetime(2026, 1, 1, tzinfo=UTC)
DATA_DRIVEN_WEIGHTS = {
    "markov": {c: Fraction(20 + 7 * i, 100) for i, c in enumerate(CHANNELS)},
    "shapley": {c: Fraction(40 - 3 * i, 100) for i, c in enumerate(CHANNELS)},
}
FIT_IDS = {"markov": 1, "shapley": 2}
HALF_LIFE_DAYS = 7.0
# Open deals (a fifth of the won ones) are credited in a pipeline snapshot taken at year end;
# lost deals (a quarter) only have stages and contacts.
OPEN_SHARE, LOST_SHARE = 5, 4
SNAPSHOT = YEAR + timedelta(days=365)
# The simulated stream's stage names (``services.simulate``): the live phase's deals move
# through the same stages, so their first appearances stay the projection's (a stream's stage
# vocabulary is stable in production; a new stage moves the deal funnel's order, README).
DEAL_STAGES = ("qualification", *SIMULATED_STAGES)
# Configured, as a production deployment with a known pipeline would (SCALING.md): a late
# event from the stream never moves the deal funnel's order (the API, the workers and the
# populate's first build share it).
STAGE_SETTING = {"CLOSEDLOOP_DEAL_STAGE_ORDER": ",".join(DEAL_STAGES)}
CHUNK = 2_000  # deals per COPY transaction (one per pool task)
SIZES = (1_000, 10_000, 100_000)  # won deals: about 10k, 100k and 1M touches
LIVE_RATE = 1000  # events/s the live workers apply while the ``_live`` figures are taken
SALES_CHANNELS = ("referral",)  # its campaigns are sales-sourced (``_static_rows``)
SALES_CAMPAIGNS = {cid for cid, _, channel in CAMPAIGNS if channel in SALES_CHANNELS}

# The query mix: periods a finance user asks for, both groupings, several models.
PERIODS = [
    "",
    "&from=2026-01-01&to=2027-01-01",
    "&from=2026-01-01&to=2026-04-01",
    "&from=2026-04-01&to=2026-07-01",
    "&from=2026-10-01&to=2027-01-01",
    "&from=2026-06-01&to=2026-07-01",
    "&from=2026-11-15&to=2026-12-15",
]
ROI_MODELS = ["linear", "w_shaped", "time_decay", "markov"]
COMPARE_MODELS = ["", "&models=first_touch,last_touch,linear", "&models=linear,markov,shapley"]
# ``roi_select``: ROI filtered, sorted and paged (a table a dashboard pages through).
SELECTIONS = [
    "&channel=paid_search,email",
    "&campaign_id=camp-paid_search-0,camp-email-1,camp-webinar-2,camp-referral-3",
    "&sourced=marketing&sort=-roi&limit=10",
    "&sourced=sales&sort=cost",
    "&sort=campaign_name&limit=10&offset=10",
    "&channel=display,organic,events&sort=-roas&limit=5&offset=5",
    "&sort=-deals&limit=20",
]


def _selection_mix() -> list[str]:
    picks: list[str] = []
    for i, period in enumerate(PERIODS):
        for j in range(2):
            selection = SELECTIONS[(2 * i + j) % len(SELECTIONS)]
            model = ROI_MODELS[(i + j) % len(ROI_MODELS)]
            # by channel where the selection does not sort by a campaign field
            group_by = "channel" if j and "campaign_name" not in selection else "campaign"
            picks.append(f"/v1/reports/roi?model={model}{period}&group_by={group_by}{selection}")
    random.Random("roi_select").shuffle(picks)
    return picks


PIPELINE_MODELS = ["linear", "w_shaped", "time_decay", "markov", "first_touch", "shapley"]


def _mix(endpoint: str) -> list[str]:
    """The queries of the endpoints without a model and grouping mix of their own."""
    if endpoint == "influence":  # no model, no grouping: one query per period
        return [f"/v1/reports/influence?{period.lstrip('&')}" for period in PERIODS]
    if endpoint == "funnel":  # contacts' lifecycle stages and deal stages, per period
        return [
            f"/v1/reports/funnel?object={obj}{period}"
            for period in PERIODS
            for obj in ("contacts", "deals")
        ]
    if endpoint == "sla":  # SQL over the worker's hand-offs, each body reused for 5 s
        return [f"/v1/reports/sla?{period.lstrip('&')}" for period in PERIODS]
    # pipeline: no period (the snapshot is the open deals now), models by both groupings
    return [
        f"/v1/reports/pipeline?model={model}&group_by={group_by}"
        for model in PIPELINE_MODELS
        for group_by in ("campaign", "channel")
    ]


def query_mix(endpoint: str) -> list[str]:
    """Return the distinct request paths the load cycles over for one endpoint."""
    if endpoint == "roi_select":
        return _selection_mix()
    rng = random.Random(endpoint)
    picks: list[str] = []
    if endpoint in ("influence", "funnel", "sla", "pipeline"):
        picks = _mix(endpoint)
        rng.shuffle(picks)
        return picks
    for i, period in enumerate(PERIODS):
        for group_by in ("campaign", "channel"):
            if endpoint == "roi":
                model = f"model={ROI_MODELS[(i + len(picks)) % len(ROI_MODELS)]}"
            else:
                model = COMPARE_MODELS[(i + len(picks)) % len(COMPARE_MODELS)].lstrip("&")
            picks.append(f"/v1/reports/{endpoint}?{model}{period}&group_by={group_by}")
    rng.shuffle(picks)
    return picks


# --- the projection -------------------------------------------------------------------------


def _models() -> list[AttributionModel]:
    models: list[AttributionModel] = list(builtin_models(half_life_days=HALF_LIFE_DAYS))
    for model_id, weights in DATA_DRIVEN_WEIGHTS.items():
        models.append(ChannelWeightModel(model_id, FIT_IDS[model_id], weights))
    return models


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _decay(journey: list[Touch], closed_at: datetime) -> tuple[list[Fraction], list[float]]:
    raw = [
        2 ** (-(closed_at - t.occurred_at).total_seconds() / 86_400 / HALF_LIFE_DAYS)
        for t in journey
    ]
    total = sum(raw)
    return [Fraction(r) for r in raw], [r / total for r in raw]


class _Writer:
    """Deals of an ``n``-deal projection as COPY text, table by table."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.models = _models()
        self.positional: dict[Any, tuple[list[Fraction], list[float]]] = {}
        self.lines: dict[str, list[str]] = {
            "deals": [],
            "touches": [],
            "credits": [],
            "deal_attributions": [],
            "contacts": [],
            "lifecycle_changes": [],
            "deal_stage_changes": [],
            "pipeline_deals": [],
            "pipeline_credits": [],
            "contact_stage_entries": [],
            "handoffs": [],
        }
        self.meeting: datetime | None = None
        self.responses: list[datetime] = []  # the primary contact's sales-response touches
        self.steps: dict[str, list[Step]] = {}  # the current deal's stage steps per root

    def _weights(
        self,
        model: AttributionModel,
        journey: list[Touch],
        roles: list[frozenset[str]],
        closed: datetime,
    ) -> tuple[list[Fraction], list[float]]:
        """Return the exact weights (normalised or not) and the normalised floats."""
        if model.model_id == "time_decay":
            return _decay(journey, closed)
        key = (model.model_id, tuple(roles) if isinstance(model, PositionalModel) else None)
        if key[1] is None or key not in self.positional:  # positional: depends on roles only
            exact = model_weights(model, journey, roles, closed_at=closed)
            if key[1] is None:
                return exact, [float(w) for w in exact]
            self.positional[key] = exact, [float(w) for w in exact]
        return self.positional[key]

    def deal(self, i: int, rng: random.Random) -> None:
        """Add deal ``i``: won below ``n``, then open (a fifth of ``n``), then lost."""
        if i < self.n:
            self.won(i, rng)
        elif i < self.n + self.n // OPEN_SHARE:
            self.open(i, rng)
        else:
            self.lost(i, rng)

    def won(self, i: int, rng: random.Random) -> None:
        """Add won deal ``i``: its row, its journey's touches, its credits under every model."""
        deal_id, account = f"D{i:07d}", f"A{i:07d}"
        closed = YEAR + timedelta(days=365 * (i + rng.random()) / self.n)
        amount = max(1, int(rng.lognormvariate(math.log(2_000_000), 0.8)))
        span = timedelta(days=rng.uniform(20, 120))
        start, created = closed - span, closed - span * rng.uniform(0.3, 0.6)
        journey = self._journey(i, rng, start, span)
        closed_text = _ts(closed)
        self.lines["deals"].append(
            f"{deal_id}\t{account}\twon\tclosed_won\t{amount}\tUSD\t{_ts(created)}\t{closed_text}"
            f"\t\\N\t{amount}\t\\N\t\\N\tconverted\t{len(journey)}\n"
        )
        roles = assign_roles(journey, created_at=created) if journey else []
        labels = [",".join(role_labels(r)) for r in roles]
        for model in self.models:
            fit = str(FIT_IDS[model.model_id]) if model.model_id in FIT_IDS else "\\N"
            if not journey:
                self.lines["deal_attributions"].append(
                    f"{model.model_id}\t{deal_id}\t{closed_text}\t{amount}\t0\t{amount}\t{fit}\n"
                )
                continue
            exact, floats = self._weights(model, journey, roles, closed)
            cents = split_cents(amount, exact)
            self.lines["credits"] += [
                f"{model.model_id}\t{deal_id}\t{t.event_id}\t{k}\t{t.campaign_id}\t{labels[k]}"
                f"\t{w!r}\t{c}\t{closed_text}\n"
                for k, (t, w, c) in enumerate(zip(journey, floats, cents, strict=True))
            ]
            self.lines["deal_attributions"].append(
                f"{model.model_id}\t{deal_id}\t{closed_text}\t{amount}\t{amount}\t0\t{fit}\n"
            )
        self._deal_stages(deal_id, rng, created, closed, len(DEAL_STAGES), "won")
        self._people(i, rng, journey, start, created, end=("customer", closed))

    def _journey(self, i: int, rng: random.Random, start: datetime, span: timedelta) -> list[Touch]:
        """Draw and write deal ``i``'s touches; one after its contact's MQL is a meeting."""
        count = 0 if rng.random() < 0.03 else rng.randint(3, 17)
        times = sorted(start + span * rng.random() for _ in range(count))
        picks = rng.choices(CAMPAIGNS, weights=POPULARITY, k=count)
        journey = [
            Touch(f"T{i:07d}-{k:02d}", t, c[0], c[2], lead_created=k == min(1, count - 1))
            for k, (t, c) in enumerate(zip(times, picks, strict=True))
        ]
        # The sales meeting answering the MQL: a touch after the lead-creating one (9 in 10).
        meeting = rng.randrange(2, count) if count > 2 and rng.random() < 0.9 else -1
        self.lines["touches"] += [
            f"{t.event_id}\t{_ts(t.occurred_at)}\t{t.campaign_id}\tC{i:07d}\tA{i:07d}"
            f"\t{'meeting' if k == meeting else 'page_view'}\t{'t' if t.lead_created else 'f'}\n"
            for k, t in enumerate(journey)
        ]
        self.meeting = journey[meeting].occurred_at if meeting > 0 else None
        # A meeting (a sales touch type) or a touch of a sales-sourced campaign answers an MQL.
        self.responses = [
            _stored(t.occurred_at)
            for k, t in enumerate(journey)
            if k == meeting or t.campaign_id in SALES_CAMPAIGNS
        ]
        return journey

    def open(self, i: int, rng: random.Random) -> None:
        """Add open deal ``i``: its row, touches, stages and credits in the pipeline snapshot."""
        deal_id, account = f"D{i:07d}", f"A{i:07d}"
        created = YEAR + timedelta(days=365 * rng.uniform(0.3, 0.99))
        amount = max(1, int(rng.lognormvariate(math.log(2_000_000), 0.8)))
        span = timedelta(days=rng.uniform(20, 120))
        start = created - span * rng.uniform(0.4, 0.7)
        journey = self._journey(i, rng, start, min(span, SNAPSHOT - start))
        stage = self._deal_stages(deal_id, rng, created, SNAPSHOT, rng.randint(1, 5), None)
        self.lines["deals"].append(
            f"{deal_id}\t{account}\topen\t{stage}\t{amount}\tUSD\t{_ts(created)}\t\\N\t\\N"
            "\t\\N\t\\N\t\\N\t\\N\t0\n"
        )
        at = _ts(SNAPSHOT)
        self.lines["pipeline_deals"].append(
            f"{deal_id}\t{stage}\t{amount}\tUSD\t{amount}\tconverted\t{len(journey)}\t{at}\n"
        )
        roles = assign_roles(journey, created_at=created) if journey else []
        for model in self.models if journey else []:
            exact, floats = self._weights(model, journey, roles, SNAPSHOT)
            cents = split_cents(amount, exact)
            self.lines["pipeline_credits"] += [
                f"{model.model_id}\t{deal_id}\t{t.event_id}\t{t.campaign_id}\t{stage}\t{c}"
                f"\t{w!r}\t{at}\n"
                for t, w, c in zip(journey, floats, cents, strict=True)
            ]
        self._people(i, rng, journey, start, created)

    def lost(self, i: int, rng: random.Random) -> None:
        """Add lost deal ``i``: its row, its stages up to the loss, its contacts (no touches)."""
        deal_id, account = f"D{i:07d}", f"A{i:07d}"
        created = YEAR + timedelta(days=365 * rng.random())
        lost_at = created + timedelta(days=rng.uniform(10, 90))
        amount = max(1, int(rng.lognormvariate(math.log(2_000_000), 0.8)))
        self._deal_stages(deal_id, rng, created, lost_at, rng.randint(1, 4), "lost")
        self.lines["deals"].append(
            f"{deal_id}\t{account}\tlost\tclosedlost\t{amount}\tUSD\t{_ts(created)}\t\\N"
            f"\t{_ts(lost_at)}\t\\N\t\\N\t\\N\t\\N\t0\n"
        )
        self.meeting, self.responses = None, []
        exit_stage = rng.choice(SIDE_EXITS)
        self._people(i, rng, [], created - timedelta(days=30), created, end=(exit_stage, lost_at))

    def _deal_stages(
        self,
        deal_id: str,
        rng: random.Random,
        created: datetime,
        end: datetime,
        top: int,
        outcome: str | None,
    ) -> str:
        """Write a deal's stage steps (the first ``top`` stages, some skipped); return the last."""
        names = [s for k, s in enumerate(DEAL_STAGES[:top]) if k == 0 or rng.random() < 0.8]
        times = sorted(created + (end - created) * rng.random() for _ in names[1:])
        rows = [("stage", s, t) for s, t in zip(names, [created, *times], strict=True)]
        if outcome is not None:
            rows.append((outcome, outcome, end))
        self.lines["deal_stage_changes"] += [
            f"S{deal_id}-{k}\t{deal_id}\t{kind}\t{stage}\t{_ts(t)}\n"
            for k, (kind, stage, t) in enumerate(rows)
        ]
        return names[-1]

    def _people(
        self,
        i: int,
        rng: random.Random,
        journey: list[Touch],
        start: datetime,
        opportunity: datetime,
        end: tuple[str, datetime] | None = None,
    ) -> None:
        """Write the account's 2-3 contacts and their lifecycle histories."""
        primary = f"C{i:07d}"
        lead_at = journey[min(1, len(journey) - 1)].occurred_at if journey else start
        steps = [("lead", lead_at)]
        if rng.random() < 0.7:
            steps.insert(0, ("subscriber", lead_at - timedelta(days=rng.uniform(1, 60))))
        if rng.random() < 0.1:  # a repeat of the stage held: not a change
            steps.append(("lead", lead_at + timedelta(hours=1)))
        if self.meeting is not None:  # the meeting answers the MQL, usually within a day
            room = (self.meeting - lead_at).total_seconds() / 3600 * 0.9
            mql = self.meeting - timedelta(hours=min(rng.lognormvariate(math.log(6), 1.2), room))
        else:
            mql = lead_at + timedelta(days=rng.uniform(1, 20))
        steps.append(("mql", mql))
        answered = max(mql, self.meeting or mql) + timedelta(hours=rng.uniform(2, 96))
        if rng.random() < 0.85:
            steps.append(("sql", answered))
        steps.append(("opportunity", max(opportunity, answered + timedelta(hours=1))))
        if end is not None:
            steps.append((end[0], max(end[1], steps[-1][1] + timedelta(hours=1))))
        self.steps = {}
        self._contact(i, 0, primary, primary, steps)
        for k in range(1, rng.choice((2, 3))):
            root = primary if rng.random() < 0.05 else f"{primary}-{k}"  # merged into the primary
            self._contact(i, k, f"{primary}-{k}", root, _side_history(rng, start, opportunity))
        self._summaries(primary)

    def _summaries(self, primary: str) -> None:
        """Write the funnel and SLA summary rows of the deal's roots, as the worker keeps them."""
        for root, steps in self.steps.items():
            touches = self.responses if root == primary else []
            entries, handoff = summary_rows(root, summarize(steps, touches, RULES))
            self.lines["contact_stage_entries"] += [_copy_line(row) for row in entries]
            if handoff is not None:
                self.lines["handoffs"].append(_copy_line(handoff))

    def _contact(
        self, i: int, k: int, contact: str, root: str, steps: list[tuple[str, datetime]]
    ) -> None:
        merged = root if root != contact else "\\N"
        self.lines["contacts"].append(
            f"{contact}\tA{i:07d}\t{steps[-1][0]}\t{merged}\t{root}\tA{i:07d}\n"
        )
        self.lines["lifecycle_changes"] += [
            f"L{i:07d}-{k}-{j}\t{contact}\t{stage}\t{_ts(at)}\n"
            for j, (stage, at) in enumerate(steps)
        ]
        self.steps.setdefault(root, []).extend(
            Step(_stored(at), f"L{i:07d}-{k}-{j}", stage) for j, (stage, at) in enumerate(steps)
        )


def _stored(moment: datetime) -> datetime:
    """A moment as the database holds it once written with ``_ts`` (whole seconds)."""
    return moment.astimezone(UTC).replace(microsecond=0)


def _copy_line(row: tuple[Any, ...]) -> str:
    """One row as a line of COPY text (timestamps as ``_ts`` writes them, null as ``\\N``)."""
    cells = ("\\N" if v is None else _ts(v) if isinstance(v, datetime) else str(v) for v in row)
    return "\t".join(cells) + "\n"


def _side_history(
    rng: random.Random, start: datetime, until: datetime
) -> list[tuple[str, datetime]]:
    """A colleague's history: a lead, half of them MQLs, answered by a stage change or not."""
    lead_at = start + (until - start) * rng.random()
    steps = [("lead", lead_at)]
    if rng.random() < 0.5:
        steps.insert(0, ("subscriber", lead_at - timedelta(days=rng.uniform(1, 60))))
    if rng.random() < 0.5:
        return steps
    mql = lead_at + timedelta(days=rng.uniform(1, 20))
    steps.append(("mql", mql))
    draw = rng.random()
    if draw < 0.6:
        steps.append(("sql", mql + timedelta(hours=rng.lognormvariate(math.log(20), 1.0))))
    elif draw < 0.75:  # recycled, and back as a lead a month later
        steps.append(("recycled", mql + timedelta(days=rng.uniform(1, 10))))
        steps.append(("lead", steps[-1][1] + timedelta(days=30)))
    elif draw < 0.85:
        steps.append(("disqualified", mql + timedelta(days=rng.uniform(1, 10))))
    return steps


_COLUMNS = {
    "deals": "deal_id, account_id, status, stage, amount_minor, currency, created_at, closed_at, "
    "lost_at, reporting_minor, fx_rate, fx_rate_date, conversion, journey_touches",
    "touches": "event_id, occurred_at, campaign_id, contact_id, account_id, touch_type, "
    "lead_created",
    "credits": "model_id, deal_id, touch_event_id, position, campaign_id, roles, weight, "
    "credit_minor, closed_at",
    "deal_attributions": "model_id, deal_id, closed_at, amount_minor, attributed_minor, "
    "unattributed_minor, fit_id",
    "contacts": "contact_id, account_id, lifecycle_stage, merged_into, root_contact_id, "
    "effective_account_id",
    "lifecycle_changes": "event_id, contact_id, stage, occurred_at",
    "deal_stage_changes": "event_id, deal_id, kind, stage, occurred_at",
    "pipeline_deals": "deal_id, stage, amount_minor, currency, reporting_minor, conversion, "
    "journey_touches, computed_at",
    "pipeline_credits": "model_id, deal_id, touch_event_id, campaign_id, stage, credit_minor, "
    "weight, computed_at",
    "contact_stage_entries": "root_contact_id, stage, entered_at, next_micros, exit_stage",
    "handoffs": "root_contact_id, mql_at, week, responded_at, response_micros",
}


def _copy_chunk(task: tuple[str, int, int, int, int]) -> int:
    """Generate and COPY deals ``[lo, hi)``; return the credit rows written."""
    dsn, n, seed, lo, hi = task
    writer = _Writer(n)
    for i in range(lo, hi):
        writer.deal(i, random.Random(seed * 10_000_019 + i))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, lines in writer.lines.items():
            with cur.copy(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN") as copy:
                copy.write("".join(lines))
    return len(writer.lines["credits"])


def _static_rows(url: str, days: int) -> None:
    """Write models, fit snapshots, campaigns and a year of daily costs."""
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session, session.begin():
        sync_builtin_models(session, Settings(_env_file=None, half_life_days=HALF_LIFE_DAYS))
    engine.dispose()
    fitted = YEAR - timedelta(days=1)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for model_id, weights in DATA_DRIVEN_WEIGHTS.items():
            key = "removal_effects" if model_id == "markov" else "values"
            results = {key: {c: str(w) for c, w in weights.items()}, "exact": True}
            cur.execute(
                "INSERT INTO model_fits (id, model_id, status, requested_at, fitted_at, params, "
                "inputs, results) VALUES (%s, %s, 'done', %s, %s, '{}', '{}', %s)",
                (FIT_IDS[model_id], model_id, fitted, fitted, json.dumps(results)),
            )
        # The ids were given: move the sequence past them, as the worker inserts fits too.
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('model_fits', 'id'), max(id)) FROM model_fits"
        )
        cur.executemany(
            "INSERT INTO campaigns (campaign_id, name, channel, is_sales_sourced) "
            "VALUES (%s, %s, %s, %s)",
            [(cid, name, channel, channel in SALES_CHANNELS) for cid, name, channel in CAMPAIGNS],
        )
        costs, cost_days = [], []
        for rank, (cid, _, _) in enumerate(CAMPAIGNS):
            per_day = int(days * 90_000 * POPULARITY[rank])  # about a third of the revenue
            for month in range(12):
                first = YEAR.date().replace(month=month + 1)
                last = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
                span = (last - first).days
                event = f"cost-{cid}-{month + 1:02d}"
                total, end = per_day * span, last - timedelta(days=1)
                costs.append(f"{event}\t{cid}\t{total}\tUSD\t{first}\t{end}\t{total}\n")
                cost_days += [
                    f"{event}\t{first + timedelta(days=d)}\t{cid}\t{per_day}\n" for d in range(span)
                ]
        with cur.copy(
            "COPY campaign_costs (event_id, campaign_id, amount_minor, currency, period_start, "
            "period_end, reporting_minor) FROM STDIN"
        ) as copy:
            copy.write("".join(costs))
        with cur.copy(
            "COPY campaign_cost_days (cost_event_id, day, campaign_id, cost_minor) FROM STDIN"
        ) as copy:
            copy.write("".join(cost_days))


BIG_TABLES = (
    "credits",
    "deal_attributions",
    "touches",
    "contacts",
    "lifecycle_changes",
    "deal_stage_changes",
    "pipeline_credits",
    "contact_stage_entries",
    "handoffs",
)


def _secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Return (name, definition) of the big tables' indexes other than their primary keys."""
    return conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = "
        "i.indexname JOIN pg_index x ON x.indexrelid = c.oid WHERE i.tablename = ANY(%s) "
        "AND NOT x.indisprimary",
        (list(BIG_TABLES),),
    ).fetchall()


def _pipeline_snapshot(url: str) -> None:
    """Record the snapshot as the worker does: its time, its models, the version it is at."""
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session, session.begin():
        session.execute(  # its sums, as ``compute_pipeline`` writes them beside the credits
            text(
                "INSERT INTO pipeline_rollups (model_id, campaign_id, stage, credit_minor, "
                "weight, credits) SELECT model_id, campaign_id, stage, sum(credit_minor), "
                "sum(weight), count(*) FROM pipeline_credits GROUP BY model_id, campaign_id, stage"
            )
        )
        bump_projection_version(session)
        value = snapshot_value(SNAPSHOT, _models(), version=projection_version(session))
        session.add(SystemStateRow(key=PIPELINE_SNAPSHOT_KEY, value=value, updated_at=SNAPSHOT))
    engine.dispose()


def _rollups(url: str) -> None:
    """Sum the report rollups from the rows written, as the worker would have kept them, and
    build the deal funnel's entries as a worker's first maintenance pass does."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        rebuild_rollups(session)
        fill_first_appearances(session)
    started = time.perf_counter()
    order = STAGE_SETTING["CLOSEDLOOP_DEAL_STAGE_ORDER"]
    refresh_deal_funnel(
        sessions, Settings(_env_file=None, database_url=url, deal_stage_order=order)
    )
    print(f"deal funnel entries built in {time.perf_counter() - started:.1f} s", flush=True)
    engine.dispose()


def populate(url: str, *, deals: int, seed: int = 7) -> dict[str, Any]:
    """Fill a migrated database with the projection of ``deals`` won deals; return counts.

    The big tables' secondary indexes are dropped for the load and rebuilt after it from
    their own definitions (a bulk build is several times faster than index maintenance row by
    row), so the schema ends exactly as migrated; the report rollups are then summed from the
    rows written (one row per key, as after a compaction).
    """
    started = time.perf_counter()
    _static_rows(url, deals // 365 + 1)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
    total = deals + deals // OPEN_SHARE + deals // LOST_SHARE
    tasks = [(dsn, deals, seed, lo, min(total, lo + CHUNK)) for lo in range(0, total, CHUNK)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        credits = sum(pool.imap_unordered(_copy_chunk, tasks))
    _pipeline_snapshot(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _, definition in indexes:
            conn.execute(definition)
    _rollups(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Autovacuum would get there on its own; now, so every run starts from the same state.
        conn.execute("VACUUM ANALYZE")
        counted = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            for table in ("touches", "contacts", "lifecycle_changes", "pipeline_credits")
        }
    return {
        "won_deals": deals,
        "open_deals": deals // OPEN_SHARE,
        "lost_deals": deals // LOST_SHARE,
        **{table: row[0] if row else 0 for table, row in counted.items()},
        "credit_rows": credits,
        "load_s": round(time.perf_counter() - started, 1),
    }


# --- the load -------------------------------------------------------------------------------

_LUA = """
local paths = {%(paths)s}
local headers = {["Authorization"] = "Bearer %(key)s"}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7)
end
function request()
  offset = offset + 1
  return wrk.format("GET", paths[(offset %% #paths) + 1], headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "FIGURES {\\"p50_ms\\": %%.3f, \\"p95_ms\\": %%.3f, \\"p99_ms\\": %%.3f, \\"max_ms\\": %%.3f, "
    .. "\\"requests\\": %%d, \\"duration_s\\": %%.3f, \\"errors\\": %%d, \\"timeouts\\": %%d}\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status, e.timeout))
end
"""


def wrk(
    base: str, paths: list[str], key: str, *, seconds: int, connections: int = 32
) -> dict[str, Any]:
    """Run wrk (2 threads) over ``paths`` for ``seconds``; return its latency figures and rate."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_LUA % {"paths": ", ".join(json.dumps(p) for p in paths), "key": key})
        script.flush()
        done = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    line = next(x for x in done.stdout.splitlines() if x.startswith("FIGURES "))
    figures: dict[str, Any] = json.loads(line.removeprefix("FIGURES "))
    # A failed or refused request is a bug; a request slower than wrk's 10 s timeout is a
    # figure (counted in ``timeouts``: the report is too slow at that size), not a crash.
    if figures["errors"]:
        raise RuntimeError(f"wrk saw {figures['errors']} errors:\n{done.stdout}")
    figures["requests_per_s"] = round(figures["requests"] / figures["duration_s"], 1)
    return figures


def miss_ms(client: httpx.Client, sessions: Any, paths: list[str]) -> dict[str, float]:
    """Time each path once, one at a time, after a projection version bump: p50/max.

    Nothing of the new version is cached, and the paths are distinct, so every request builds
    its report; it leaves them all cached (the load that follows measures the steady state).
    """
    with sessions() as session, session.begin():
        bump_projection_version(session)
    times = []
    for path in paths:
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def memory_mb(pid: int) -> dict[str, float]:
    """Return a process's resident set and its peak, in MB, from ``/proc/<pid>/status``."""
    kib = memory_kib(pid)
    return {"rss_mb": round(kib["VmRSS"] / 1024, 1), "peak_rss_mb": round(kib["VmHWM"] / 1024, 1)}


FIGURES = ("p50_ms", "p95_ms", "p99_ms", "requests_per_s")
# The funnel last: its deal-stage builds (seconds each at 100k deals, still computed from the
# history in Python), still running in the API when wrk stops, would otherwise land in the
# next endpoint's figures.
ENDPOINTS = ("roi", "compare", "roi_select", "influence", "pipeline", "sla", "funnel")


def live(
    db: str, base: str, key: str, *, seconds: int, workers: int, api_pid: int
) -> dict[str, Any]:
    """Load each endpoint once while ``workers`` workers apply ``LIVE_RATE`` events/s to ``db``.

    The workers consume a topic a producer fills with simulated CRM histories (their own
    accounts, deals and campaigns, closing in 2026 like the projection); every batch they
    commit changes the projection, so the API's cache turns over as it does in production.
    ``live_stream`` says whether they kept up: events applied per second during the wrk runs,
    the backlog at the end, and the CPU seconds of workers, API, PostgreSQL, broker and bench.
    """
    out: dict[str, Any] = {}
    stream_figures: dict[str, Any] = {"workers": workers, "target_events_per_s": LIVE_RATE}
    with live_stream(db, workers=workers, rate=LIVE_RATE, env=STAGE_SETTING) as stream:
        stream.others["api"] = [api_pid]
        stream_figures["caught_up_after_s"] = stream.caught_up_s
        with stream.window(stream_figures):
            for endpoint in ENDPOINTS:
                figures = wrk(base, query_mix(endpoint), key, seconds=seconds)
                out[f"{endpoint}_live"] = {f: figures[f] for f in (*FIGURES, "timeouts")}
    out["live_stream"] = stream_figures
    return out


def exercise(db: str, *, seconds: int, runs: int, live_workers: int = 1) -> dict[str, Any]:
    """Start the API on a populated database, load each endpoint; return the figures.

    Per endpoint: ``<endpoint>_miss`` (each query of the mix built once, one at a time),
    ``<endpoint>`` (steady state, the median of ``runs`` wrk runs); then, every endpoint
    after the other, ``<endpoint>_live`` (one run while real workers apply a live stream:
    ``live``). The steady phase comes first, on the projection as populated.
    """
    key = make_key(db, ["read"])
    port = free_port()
    out: dict[str, Any] = {}
    engine = make_engine(db)
    sessions = make_sessionmaker(engine)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CLOSEDLOOP_DATABASE_URL": db, "CLOSEDLOOP_API_PORT": str(port), **STAGE_SETTING}
        proc = start_service("api", env, Path(tmp) / "api.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_port(port, timeout_s=60)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
                for endpoint in ENDPOINTS:
                    paths = query_mix(endpoint)
                    out[f"{endpoint}_miss"] = miss_ms(client, sessions, paths)
                    load = [wrk(base, paths, key, seconds=seconds) for _ in range(runs)]
                    out[endpoint] = {f: statistics.median(r[f] for r in load) for f in FIGURES}
                    out[endpoint] |= {"runs": load, "distinct_queries": len(paths)}
            out["api_memory_steady"] = memory_mb(proc.pid)
            out |= live(db, base, key, seconds=seconds, workers=live_workers, api_pid=proc.pid)
            out["api_memory"] = memory_mb(proc.pid)
        finally:
            stop(proc)
            engine.dispose()
    return out


def measure(deals: int, *, seconds: int, runs: int, live_workers: int = 1) -> dict[str, Any]:
    """Build a projection of ``deals`` won deals in a fresh database; return its figures."""
    with postgres_database("closedloop_bench") as db:
        out = populate(db, deals=deals)
        return out | exercise(db, seconds=seconds, runs=runs, live_workers=live_workers)


def run(
    *,
    quick: bool,
    deals: list[int] | None = None,
    runs: int | None = None,
    workers: list[int] | None = None,
) -> dict[str, Any]:
    """Measure report latency and API memory; full: 1k/10k/100k won deals, headline 100k.

    ``deals`` picks the sizes (quick: 2,000), ``runs`` the steady runs per endpoint (full: 3 at
    100k, else 1), ``workers`` the live workers (the first count; default 1).
    """
    seconds = 2 if quick else 10
    live_workers = (workers or [1])[0]
    chosen = deals or ([2_000] if quick else list(SIZES))
    sizes = {
        n: measure(
            n,
            seconds=seconds,
            runs=runs or (3 if n == 100_000 and not quick else 1),
            live_workers=live_workers,
        )
        for n in chosen
    }
    headline = sizes[max(sizes)]
    return {
        "headline_won_deals": max(sizes),
        **{f"{e}_p95_ms": headline[e]["p95_ms"] for e in ENDPOINTS},
        **{f"{e}_live_p95_ms": headline[f"{e}_live"]["p95_ms"] for e in ENDPOINTS},
        "live_applied_events_per_s": headline["live_stream"]["applied_events_per_s"],
        "api_rss_mb": headline["api_memory"]["rss_mb"],
        "sizes": {str(n): figures for n, figures in sizes.items()},
    }


def table(result: dict[str, Any]) -> str:
    """Render each size's endpoints as a Markdown table: steady, miss and live side by side."""
    out = []
    for size, f in result["sizes"].items():
        stream = f["live_stream"]
        cpu = stream["cpu_s"]
        out += [
            f"{int(size):,} won deals ({f['touches']:,} touches); live: {stream['workers']} "
            f"worker(s) applying {stream['applied_events_per_s']:,} ev/s (target "
            f"{stream['target_events_per_s']:,}; backlog at end {stream['backlog_events_at_end']:,}"
            f"), CPU s over {stream['seconds']} s: worker {cpu['worker']}, api {cpu['api']}, "
            f"PostgreSQL {cpu['postgres']}, broker {cpu['broker']}, bench+wrk {cpu['bench']}; "
            f"load average {', '.join(str(x) for x in stream['load_average_before'])}",
            "",
            "| endpoint | steady p50 / p95 / p99 | req/s | miss p50 / max | live p50 / p95 / p99 "
            "| live req/s (timeouts) |",
            "|---|---|---|---|---|---|",
        ]
        for e in ENDPOINTS:
            steady, miss, live_ = f[e], f[f"{e}_miss"], f[f"{e}_live"]
            out.append(
                f"| {e} | {steady['p50_ms']:.1f} / **{steady['p95_ms']:.1f}** / "
                f"{steady['p99_ms']:.1f} ms | {steady['requests_per_s']:,.0f} "
                f"| {miss['p50_ms']:,.0f} / {miss['max_ms']:,.0f} ms "
                f"| {live_['p50_ms']:,.1f} / **{live_['p95_ms']:,.1f}** / {live_['p99_ms']:,.1f} ms"
                f" | {live_['requests_per_s']:,.0f} ({live_['timeouts']}) |"
            )
        out.append("")
    return "\n".join(out)
