"""``closedloop recompute``: the rebuild with a progress bar, recorded in the audit log."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from services.attribution.recompute import recompute
from services.core.audit import record_audit
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings


def recompute_with_progress(
    settings: Settings,
    *,
    deal_ids: list[str] | None,
    model_ids: list[str] | None,
    batch: int,
    console: Console,
) -> int:
    """Run ``recompute`` showing a progress bar; return the number of deals rebuilt."""
    engine = make_engine(settings.database_url)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("Recomputing deals", total=None)
            done = recompute(
                make_sessionmaker(engine),
                settings,
                deal_ids=deal_ids,
                model_ids=model_ids,
                batch=batch,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
        with make_sessionmaker(engine).begin() as session:
            detail = {"deals": done, "only_deals": deal_ids, "only_models": model_ids}
            record_audit(session, None, "projection.recompute", "projection", detail)
    finally:
        engine.dispose()
    return done
