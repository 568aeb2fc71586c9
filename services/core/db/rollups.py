"""The report rollups' SQL: append the deltas of a change, retract a model, compact, rebuild.

``credit_rollups``, ``attribution_rollups`` and ``won_rollups`` summarise ``credits``,
``deal_attributions`` and the won ``deals`` per key (``services.domain.rollup``). They are
append-only: every change of a summarised row appends, in the same transaction, the change of
its key's sums, so the sum of a key's rollup rows equals the sum of its summarised rows in
every committed state, and concurrent writers never wait on each other's rollup rows.

Invariant, per writer: the old rows a change replaces are exactly the rows it removed
(``DELETE … RETURNING``, or rows only this transaction may change: the caller recomputes a
deal alone), and the new rows exactly those it wrote. ORM writes (``session.add`` of a
summarised row, a change or delete of a loaded one) are covered by ``track_orm_writes``, which
``make_sessionmaker`` installs; bulk SQL writers call ``append_deltas`` themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Date,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Session, sessionmaker

from services.core.db.schema import (
    AttributionRollupRow,
    CreditRollupRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
    InfluenceRollupRow,
    SystemStateRow,
    WonRollupRow,
)
from services.core.db.upsert import among, insert_new, upsert
from services.domain.rollup import (
    ATTRIBUTIONS,
    CREDITS,
    INFLUENCE,
    WON,
    Entry,
    InfluenceTouch,
    RollupSpec,
    combine,
    delta,
    entries,
    net,
)

ROLLUPS: dict[RollupSpec, type[DeclarativeBase]] = {
    CREDITS: CreditRollupRow,
    ATTRIBUTIONS: AttributionRollupRow,
    WON: WonRollupRow,
    INFLUENCE: InfluenceRollupRow,
}
SUMMARISED: dict[type[DeclarativeBase], RollupSpec] = {
    CreditRow: CREDITS,
    DealAttributionRow: ATTRIBUTIONS,
    DealRow: WON,
}
# The columns of a summarised row that its rollup reads, per table.
CREDIT_COLUMNS = (
    CreditRow.model_id,
    CreditRow.campaign_id,
    CreditRow.closed_at,
    CreditRow.credit_minor,
    CreditRow.weight,
)
ATTRIBUTION_COLUMNS = (
    DealAttributionRow.model_id,
    DealAttributionRow.closed_at,
    DealAttributionRow.fit_id,
    DealAttributionRow.amount_minor,
    DealAttributionRow.attributed_minor,
    DealAttributionRow.unattributed_minor,
)
WON_COLUMNS = (
    DealRow.status,
    DealRow.closed_at,
    DealRow.conversion,
    DealRow.currency,
    DealRow.amount_minor,
    DealRow.reporting_minor,
)
_COLUMNS: dict[RollupSpec, tuple[InstrumentedAttribute[Any], ...]] = {
    CREDITS: CREDIT_COLUMNS,
    ATTRIBUTIONS: ATTRIBUTION_COLUMNS,
    WON: WON_COLUMNS,
}


# The influence rollup's pairs come from this model's credit rows (a row per journey touch,
# with its roles) and its deal attributions (the deal's reporting amount).
SOURCE_MODEL = "linear"
LEAD_CREATION = "lead_creation"


def append_deltas(
    session: Session, spec: RollupSpec, old: Iterable[Entry], new: Iterable[Entry]
) -> None:
    """Append the rollup rows that turn the sums of the ``old`` entries into the ``new``."""
    insert_new(session, ROLLUPS[spec], net(spec, old, new))


def day_of(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The UTC day of a stored (naive UTC) timestamp column, on either dialect."""
    return func.date(column, type_=Date) if dialect == "sqlite" else cast(column, Date)


def delete_credits(session: Session, condition: Any) -> tuple[list[Entry], list[InfluenceTouch]]:
    """Delete the credit rows meeting ``condition``; return the rollup entries of exactly the
    rows deleted (``DELETE … RETURNING``), and the influence touches among them (``linear``).

    The key's day comes from the database and only the key and summed columns, the deal and
    the roles cross the wire.
    """
    table: Any = CreditRow.__table__
    day = day_of(table.c.closed_at, session.get_bind().dialect.name)
    found = session.connection().execute(
        delete(table)
        .where(condition)
        .returning(
            table.c.model_id,
            table.c.campaign_id,
            day,
            table.c.credit_minor,
            table.c.weight,
            table.c.deal_id,
            table.c.roles,
        )
    )
    credits, touches = [], []
    for m, c, d, minor, weight, deal_id, roles in found:
        credits.append(((m, c, d), (minor, weight, 1)))
        if m == SOURCE_MODEL:
            touches.append((deal_id, c, d, LEAD_CREATION in roles.split(",")))
    return credits, touches


def delete_attributions(session: Session, condition: Any) -> tuple[list[Entry], dict[str, int]]:
    """Delete the deal attributions meeting ``condition``; return the rollup entries of
    exactly the rows deleted, and the deals' amounts among them (``linear``)."""
    table: Any = DealAttributionRow.__table__
    day = day_of(table.c.closed_at, session.get_bind().dialect.name)
    deleted = session.connection().execute(
        delete(table)
        .where(condition)
        .returning(
            table.c.model_id,
            day,
            table.c.fit_id,
            table.c.amount_minor,
            table.c.attributed_minor,
            table.c.unattributed_minor,
            table.c.deal_id,
        )
    )
    found, amounts = [], {}
    for m, d, f, amount, a, u, deal_id in deleted:
        found.append(((m, d, f), (1, amount, a, u)))
        if m == SOURCE_MODEL:
            amounts[deal_id] = amount
    return found, amounts


def retract_model(session: Session, model_id: str) -> None:
    """Delete a model's credits and deal attributions, and take their sums off the rollups.

    PostgreSQL: each delete feeds its own rollup insert in one statement (a data-modifying
    CTE), so exactly the rows deleted are retracted, whatever commits meanwhile. SQLite (one
    writer): the sums are appended, then the rows deleted, in the same transaction.
    """
    if model_id == SOURCE_MODEL:  # built in, never deleted: the influence rollup reads it
        raise ValueError(f"the {SOURCE_MODEL} model's rows are not retracted")
    dialect = session.get_bind().dialect.name
    for row_cls, rollup in _SQL_SUMMARISED:
        table: Any = row_cls.__table__
        condition = table.c.model_id == model_id
        if dialect == "postgresql":
            gone = delete(table).where(condition).returning(*table.c).cte("gone")
            session.execute(_insert_sums(rollup, gone, dialect, sign=-1).add_cte(gone))
        else:
            rows = select(table).where(condition).subquery("gone")
            session.execute(_insert_sums(rollup, rows, dialect, sign=-1))
            session.execute(delete(table).where(condition))


_SQL_SUMMARISED = ((CreditRow, CreditRollupRow), (DealAttributionRow, AttributionRollupRow))


def _insert_sums(rollup: type[DeclarativeBase], rows: Any, dialect: str, *, sign: int) -> Any:
    """``INSERT INTO rollup SELECT key, sign * sums FROM rows GROUP BY key`` (credits or deal
    attributions)."""

    def signed(total: ColumnElement[Any]) -> ColumnElement[Any]:
        return -total if sign < 0 else total

    day = day_of(rows.c.closed_at, dialect)
    if rollup is CreditRollupRow:
        keys = [rows.c.model_id, rows.c.campaign_id, day]
        sums = [func.sum(rows.c.credit_minor), func.sum(rows.c.weight), func.count()]
    else:
        keys = [rows.c.model_id, day, rows.c.fit_id]
        sums = [func.count(), *(func.sum(rows.c[c]) for c in ATTRIBUTIONS.value_columns[1:])]
    spec = CREDITS if rollup is CreditRollupRow else ATTRIBUTIONS
    return insert(rollup).from_select(
        [*spec.key_columns, *spec.value_columns],
        select(*keys, *(signed(total) for total in sums)).group_by(*keys),
    )


def influence_pairs(dialect: str, deal_ids: Any = None) -> Any:
    """Select the influence rollup's summarised rows: one per (deal, campaign) of a deal's
    ``linear`` journey, with the credits' day, whether the campaign sourced it, its amount.

    ``deal_ids``: a condition on ``credits.deal_id`` (all deals when None). A deal without a
    ``linear`` deal attribution has no amount and no pair.
    """
    credits: Any = CreditRow.__table__
    attributions: Any = DealAttributionRow.__table__
    day = day_of(credits.c.closed_at, dialect).label("day")
    holds_lead = case((credits.c.roles.contains(LEAD_CREATION), 1), else_=0)
    query = (
        select(
            credits.c.deal_id,
            credits.c.campaign_id,
            day,
            func.max(holds_lead).label("sourced"),
            attributions.c.amount_minor,
        )
        .join(
            attributions,
            (attributions.c.deal_id == credits.c.deal_id)
            & (attributions.c.model_id == SOURCE_MODEL),
        )
        .where(credits.c.model_id == SOURCE_MODEL)
        .group_by(credits.c.deal_id, credits.c.campaign_id, day, attributions.c.amount_minor)
    )
    return query if deal_ids is None else query.where(deal_ids)


def influence_entries(session: Session, deal_ids: Iterable[str]) -> list[Entry]:
    """Return the influence rollup entries of these deals as stored now (committed state and
    this transaction's writes)."""
    ids = list(deal_ids)
    if not ids:
        return []
    dialect = session.get_bind().dialect.name
    condition = among(session, CreditRow.__table__.c.deal_id, ids)
    rows = session.connection().execute(influence_pairs(dialect, condition))
    return list(entries(INFLUENCE, (row._mapping for row in rows)))


def _insert_influence_sums(dialect: str) -> Any:
    """``INSERT INTO influence_rollups`` the sums of every deal's pairs, per key."""
    pairs = influence_pairs(dialect).subquery("pairs")
    sourced = case((pairs.c.sourced == 1, pairs.c.amount_minor), else_=0)
    keys = [pairs.c.campaign_id, pairs.c.day]
    return insert(InfluenceRollupRow).from_select(
        [*INFLUENCE.key_columns, *INFLUENCE.value_columns],
        select(
            *keys,
            func.sum(sourced),
            func.sum(pairs.c.sourced),
            func.sum(pairs.c.amount_minor),
            func.count(),
        ).group_by(*keys),
    )


COMPACTED = "rollups.compacted_through"  # system_state: per table, the last id compacted


def compact_rollups(session: Session, *, full: bool = False) -> int:
    """Replace the rows of each rollup key that has several by one row of their sums.

    Incremental: only the keys sharing a (model, day) — a day, for won deals and influence —
    with a row added since the last compaction (``system_state``: the highest id it saw, per
    table) are looked at, so a pass costs what changed since the previous one; ``full`` looks
    at every key (a row an unfinished transaction had added below that mark is otherwise compacted
    only when its key changes again). In the caller's transaction: the chosen rows are
    deleted (``DELETE … RETURNING``) and their sums inserted, dropping keys whose sums are
    all 0. Safe while other transactions append deltas: only rows this statement deleted are
    summed, so a concurrent delta stays and counts. Returns the number of rows removed net.
    """
    marks = _marks(session)
    before, removed = dict(marks), 0
    for spec, rollup in ROLLUPS.items():
        table: Any = rollup.__table__
        top = session.scalar(select(func.max(table.c.id)))
        name = str(table.name)  # a plain str: the marks are stored as JSON
        mark = 0 if full else marks.get(name, 0)
        if top is None or top <= mark:
            continue
        ids = _crowded(session, spec, table, after=mark)
        if ids:
            gone = session.execute(
                delete(table)
                .where(among(session, table.c.id, ids))
                .returning(*(table.c[c] for c in (*spec.key_columns, *spec.value_columns)))
            ).all()
            kept = combine(spec, [row._mapping for row in gone])
            insert_new(session, rollup, kept)
            removed += len(gone) - len(kept)
        if session.get_bind().dialect.name != "postgresql":
            # SQLite gives a new row the highest id + 1, reusing the ids of deleted rows: the
            # sums just inserted may have taken ids at or below ``top``, and the next deltas
            # may too. Mark the highest id now (one writer: every row up to it was looked at),
            # even below the previous mark, so the next row's id is above it.
            marks[name] = session.scalar(select(func.max(table.c.id))) or 0
        else:  # PostgreSQL's ids come from a sequence: the mark stays at what was looked at
            marks[name] = max(top, marks.get(name, 0))
    if marks != before:
        value = orjson.dumps(marks).decode()
        upsert(session, SystemStateRow, [{"key": COMPACTED, "value": value, "updated_at": _now()}])
    return removed


def _now() -> datetime:
    return datetime.now(UTC)


def _marks(session: Session) -> dict[str, int]:
    stored = session.get(SystemStateRow, COMPACTED)
    return {} if stored is None else dict(orjson.loads(stored.value))


def _crowded(session: Session, spec: RollupSpec, table: Any, *, after: int) -> list[int]:
    """The ids of the rows of keys with several rows (or summarising nothing), among the keys
    sharing a (model, day) — a day for won deals — with a row of id above ``after``."""
    keys = [table.c[c] for c in spec.key_columns]
    count = table.c[spec.count_column]
    rows = select(table.c.id, count, func.count().over(partition_by=keys).label("rows"))
    if after:  # a key lies within one (model, day): its rows are all among the group's
        groups = [table.c[c] for c in spec.group_columns]
        recent = select(*groups).where(table.c.id > after).distinct()
        rows = rows.where(tuple_(*groups).in_(recent) if len(groups) > 1 else groups[0].in_(recent))
    ranked = rows.subquery("ranked")
    crowded = select(ranked.c.id).where(or_(ranked.c.rows > 1, ranked.c[count.name] == 0))
    return list(session.scalars(crowded))


def rebuild_rollups(session: Session) -> None:
    """Replace every rollup row by the sums of the rows it summarises (one row per key).

    For a projection written in bulk without its rollups (``bench/reports.py``); the same
    sums as migration 0007's backfill. Not safe beside concurrent writers.
    """
    dialect = session.get_bind().dialect.name
    for rollup in ROLLUPS.values():
        session.execute(delete(rollup))
    session.execute(delete(SystemStateRow).where(SystemStateRow.key == COMPACTED))
    for row_cls, rollup in _SQL_SUMMARISED:
        session.execute(_insert_sums(rollup, row_cls.__table__, dialect, sign=1))
    session.execute(_insert_influence_sums(dialect))
    deals: Any = DealRow.__table__
    day = day_of(deals.c.closed_at, dialect)
    conversion = func.coalesce(deals.c.conversion, "unconverted")
    session.execute(
        insert(WonRollupRow).from_select(
            ["day", "conversion", "currency", *WON.value_columns],
            select(
                day,
                conversion,
                deals.c.currency,
                func.count(),
                func.coalesce(func.sum(deals.c.amount_minor), 0),
                func.coalesce(func.sum(deals.c.reporting_minor), 0),
            )
            .where(deals.c.status == "won", deals.c.closed_at.is_not(None))
            .group_by(day, conversion, deals.c.currency),
        )
    )


# --- ORM writes ------------------------------------------------------------------------------


def _orm_rows(obj: Any, spec: RollupSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (old, new) column values of a loaded summarised object about to be flushed."""
    state = inspect(obj)
    old, new = {}, {}
    for column in _COLUMNS[spec]:
        history = state.attrs[column.key].history
        new[column.key] = getattr(obj, column.key)
        old[column.key] = history.deleted[0] if history.deleted else new[column.key]
    return old, new


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Append the rollup deltas of the summarised rows this flush adds, changes or deletes."""
    old: dict[RollupSpec, list[dict[str, Any]]] = {spec: [] for spec in ROLLUPS}
    new: dict[RollupSpec, list[dict[str, Any]]] = {spec: [] for spec in ROLLUPS}
    for obj in session.new:
        if (spec := SUMMARISED.get(type(obj))) is not None:
            new[spec].append(_orm_rows(obj, spec)[1])
    for obj in session.dirty:
        if (spec := SUMMARISED.get(type(obj))) is not None and session.is_modified(obj):
            before, after = _orm_rows(obj, spec)
            old[spec].append(before)
            new[spec].append(after)
    for obj in session.deleted:
        if (spec := SUMMARISED.get(type(obj))) is not None:
            old[spec].append(_orm_rows(obj, spec)[0])
    for spec, rollup in ROLLUPS.items():
        for row in delta(spec, old[spec], new[spec]):
            session.add(rollup(**row))
    # The influence pairs are per deal, not per row: read the touched deals' entries now
    # (before this flush writes) and again after it, and append the difference then.
    deals: set[str] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, (CreditRow, DealAttributionRow)):
            deals |= _linear_deals(obj)
    if deals:
        session.info[_INFLUENCE_BEFORE] = (deals, influence_entries(session, deals))


_INFLUENCE_BEFORE = "closedloop.influence_before"


def _linear_deals(obj: CreditRow | DealAttributionRow) -> set[str]:
    """The deals a ``linear`` credit or attribution object was or is about to be part of."""
    state: Any = inspect(obj)
    attrs = state.attrs
    if obj.model_id != SOURCE_MODEL and SOURCE_MODEL not in attrs.model_id.history.deleted:
        return set()
    return {obj.deal_id, *attrs.deal_id.history.deleted}


def _after_flush(session: Session, _context: Any) -> None:
    """Append the influence deltas of the deals whose ``linear`` rows this flush wrote."""
    before = session.info.pop(_INFLUENCE_BEFORE, None)
    if before is not None:
        deals, old = before
        rows = net(INFLUENCE, old, influence_entries(session, deals))
        if rows:
            session.connection().execute(insert(InfluenceRollupRow), rows)


def track_orm_writes(factory: sessionmaker[Session]) -> None:
    """Keep the rollups right for summarised rows written through the ORM by ``factory``."""
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "after_flush", _after_flush)
