"""Two workers at once on PostgreSQL: no hidden global lock, and exact credits whatever the
interleaving of their transactions.

Each "worker" is a thread running the worker's own batch path (``apply_batch``, then
``drain``) on its own connection against a real PostgreSQL, on records of its own partition.
A barrier placed inside the batch transaction (where the batch queues its impact, just before
the offsets and the commit) holds one transaction open while the other runs, so both orders
of the race a global lock used to prevent are forced, not hoped for:

- worker A stores a touch of account X, worker B stores the win of X's deal D;
- A's transaction is still open when B commits and recomputes D (and the other way round).

Expected credits are worked by hand: one touch in the deal's journey takes the whole amount
under every positional model (100000 minor units of "1000.00" USD, to campaign ``ads``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

import services.attribution.batch as batch_module
from services.attribution.batch import Record, apply_batch
from services.attribution.dirty import drain
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import CreditRow, DealAttributionRow
from services.core.events import encode
from services.core.settings import Settings
from tests.support import builders as b
from tests.support.infra import postgres_database

pytestmark = pytest.mark.integration
POSITIONAL = ("first_touch", "last_touch", "linear", "u_shaped", "w_shaped")
ROUNDS = 6  # per order: each round a fresh account, touch and deal


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, sessionmaker[Session], Settings]]:
    with postgres_database("closedloop_concurrency") as url:
        engine = make_engine(url, pool_size=8)
        sessions = make_sessionmaker(engine)
        settings = Settings(_env_file=None, database_url=url)
        with sessions() as session, session.begin():
            sync_builtin_models(session, settings)
        yield engine, sessions, settings
        engine.dispose()


class Pauses:
    """Per-thread hooks run inside a batch transaction, right after it queued its impact."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hooks: dict[str, Callable[[Session], None]] = {}
        original = batch_module.queue_impact

        def queue_and_pause(session: Session, impact: Any, *, now: datetime) -> None:
            original(session, impact, now=now)
            hook = self.hooks.get(threading.current_thread().name)
            if hook is not None:
                hook(session)

        monkeypatch.setattr(batch_module, "queue_impact", queue_and_pause)


def records(partition: int, *events: dict[str, Any]) -> list[Record]:
    return [
        Record("events", partition, offset, encode(event))
        for offset, event in enumerate(b.events(*events))
    ]


def apply_and_drain(
    sessions: sessionmaker[Session], settings: Settings, batch: list[Record]
) -> None:
    apply_batch(sessions, batch, settings=settings)
    drain(sessions, settings)


def run(name: str, target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def credits_of(sessions: sessionmaker[Session], deal_id: str) -> dict[str, dict[str, int]]:
    with sessions() as session:
        got: dict[str, dict[str, int]] = {}
        for row in session.scalars(select(CreditRow).where(CreditRow.deal_id == deal_id)):
            per = got.setdefault(row.model_id, {})
            per[row.campaign_id] = per.get(row.campaign_id, 0) + row.credit_minor
        return got


def test_two_workers_batch_transactions_overlap(
    database: tuple[Engine, sessionmaker[Session], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both batch transactions are open at the same moment (a global lock would block one)."""
    engine, sessions, settings = database
    pauses = Pauses(monkeypatch)
    both_inside = threading.Barrier(2, timeout=15)
    seen: dict[str, int] = {}

    def meet(session: Session) -> None:
        seen[threading.current_thread().name] = int(session.scalar(text("SELECT txid_current()")))
        both_inside.wait()  # raises BrokenBarrierError if the other cannot get in

    pauses.hooks = {"w1": meet, "w2": meet}
    errors: list[BaseException] = []
    threads = [
        run(
            f"w{n}",
            lambda n=n: apply_and_drain(
                sessions,
                settings,
                records(
                    n,
                    b.contact(f"overlap-c{n}", f"overlap-a{n}"),
                    b.touch(f"overlap-t{n}", "ads", -5, contact=f"overlap-c{n}"),
                ),
            ),
            errors,
        )
        for n in (1, 2)
    ]
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(set(seen.values())) == 2, seen  # two distinct transactions, open together


def race_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    pauses: Pauses,
    held_batch: list[Record],
    free_batch: list[Record],
) -> None:
    """Hold ``held_batch``'s transaction open while ``free_batch`` commits and drains."""
    inside, other_done, release_held = threading.Event(), threading.Event(), threading.Event()

    def hold(_: Session) -> None:
        inside.set()  # the held transaction has written its rows and is still open
        release_held.wait(15)

    def free() -> None:
        assert inside.wait(15), "the held batch never reached its transaction's end"
        apply_and_drain(sessions, settings, free_batch)
        other_done.set()
        release_held.set()

    pauses.hooks = {"held": hold}
    errors: list[BaseException] = []
    first = run("held", lambda: apply_and_drain(sessions, settings, held_batch), errors)
    second = run("free", free, errors)
    second.join(30)
    first.join(30)
    assert not errors, errors
    assert other_done.is_set()


@pytest.mark.parametrize("held", ["touch", "win"])
def test_touch_and_win_of_one_account_race_in_both_orders(
    database: tuple[Engine, sessionmaker[Session], Settings],
    monkeypatch: pytest.MonkeyPatch,
    held: str,
) -> None:
    """The held batch commits only after the other committed and recomputed; credits exact."""
    engine, sessions, settings = database
    apply_and_drain(sessions, settings, records(9, b.campaign("ads", "paid_search")))
    pauses = Pauses(monkeypatch)
    for n in range(ROUNDS):
        account, deal = f"{held}-acct-{n}", f"{held}-deal-{n}"
        touch_batch = records(0, b.touch(f"{held}-touch-{n}", "ads", -20, account=account))
        win_batch = records(
            1,
            b.deal_created(deal, account, "1000.00", -30),
            b.deal_status(deal, "closed_won", 1),
        )
        held_batch, free_batch = (
            (touch_batch, win_batch) if held == "touch" else (win_batch, touch_batch)
        )
        race_once(sessions, settings, pauses, held_batch, free_batch)
        got = credits_of(sessions, deal)
        assert {m: got.get(m) for m in POSITIONAL} == {m: {"ads": 100_000} for m in POSITIONAL}
        with sessions() as session:
            attributed = session.scalar(
                select(DealAttributionRow.attributed_minor).where(
                    DealAttributionRow.model_id == "linear", DealAttributionRow.deal_id == deal
                )
            )
        assert attributed == 100_000


def test_no_work_is_left_queued(database: tuple[Engine, sessionmaker[Session], Settings]) -> None:
    _, sessions, settings = database
    drain(sessions, settings)
    with sessions() as session:
        left = session.execute(
            text(
                "SELECT (SELECT count(*) FROM pending_impacts), (SELECT count(*) FROM dirty_deals),"
                " (SELECT count(*) FROM dirty_roots)"
            )
        ).one()
    assert tuple(left) == (0, 0, 0)
