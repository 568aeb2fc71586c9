"""``closedloop`` subcommands: up, ingest, worker, api, migrate, keys, recompute, simulate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import typer
from rich.console import Console

from services.core.settings import Settings

app = typer.Typer(
    help="Closed Loop: revenue attribution from CRM events, to the cent.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()


def settings() -> Settings:
    """Read settings from the environment and ``.env``."""
    return Settings()


@app.command()
def up(
    demo: bool = typer.Option(True, help="Post a simulated CRM history once ready."),
    demo_deals: int = typer.Option(300, help="Deals in the simulated history."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show every library's logs and each HTTP request."
    ),
) -> None:
    """Run the whole pipeline on embedded defaults: bundled broker, SQLite, ingest, worker, API."""
    from services.cli.stack import run_stack

    run_stack(settings(), demo=demo, demo_deals=demo_deals, console=console, verbose=verbose)


@app.command()
def ingest() -> None:
    """Run the ingest service (HTTP → Kafka)."""
    from services.ingest.main import run

    run(settings())


@app.command()
def worker() -> None:
    """Run an attribution worker (Kafka → database)."""
    from services.attribution.worker import run

    run(settings())


@app.command()
def api() -> None:
    """Run the read API."""
    from services.api.main import run

    run(settings())


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision and sync the built-in models."""
    from services.attribution.registry import sync_builtin_models
    from services.core.db.engine import make_engine, make_sessionmaker
    from services.core.db.migrate import upgrade
    from services.core.db.unit_of_work import MODELS_IN_FORCE, Lock, unit_of_work

    cfg = settings()
    upgrade(cfg.database_url)
    engine = make_engine(cfg.database_url)
    with unit_of_work(make_sessionmaker(engine), Lock(MODELS_IN_FORCE)) as session:
        sync_builtin_models(session, cfg)
    engine.dispose()
    console.print(f"[green]database at head[/green]: {cfg.database_url}")


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., help="Who the key is for."),
    scopes: str = typer.Option("read", help="Comma-separated: ingest, read, admin."),
    expires: str | None = typer.Option(
        None,
        help="When the key stops working: a duration (90d, 12h), a date (2027-01-01, UTC "
        "midnight) or a time with an offset. Default: never.",
    ),
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from services.cli.keys import create

    create(settings(), name=name, scopes=scopes, expires=expires)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: id, name, prefix, scopes, created, expires, state (never the secrets)."""
    from services.cli.keys import show

    show(settings())


@keys_app.command("revoke")
def keys_revoke(key_id: int = typer.Argument(..., help="The key's id (see keys list).")) -> None:
    """Revoke a key: the services refuse it within seconds (their key cache's lifetime)."""
    from services.cli.keys import revoke

    revoke(settings(), key_id)


@app.command()
def recompute(
    deal: list[str] = typer.Option(None, help="Only these deals (repeatable)."),
    model: list[str] = typer.Option(None, help="Only these models (repeatable)."),
    batch: int = typer.Option(500, help="Deals per transaction."),
) -> None:
    """Rebuild deals' state and credits from the stored events, with a progress bar."""
    from services.attribution.recompute import UnknownModel
    from services.cli.recompute import recompute_with_progress

    try:
        total = recompute_with_progress(
            settings(), deal_ids=deal or None, model_ids=model or None, batch=batch, console=console
        )
    except UnknownModel as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    console.print(f"[green]recomputed {total} deals[/green]")


@app.command()
def fit(
    model: list[str] = typer.Option(None, help="markov and/or shapley (default both)."),
) -> None:
    """Fit the data-driven models now, store the snapshots and rebuild their credits."""
    from rich.table import Table

    from services.attribution.fitting import request_fit, run_requested_fits
    from services.core.audit import record_audit
    from services.core.db.engine import make_engine, make_sessionmaker
    from services.core.db.schema import ModelFitRow
    from services.core.db.unit_of_work import unit_of_work
    from services.domain.datadriven import DATA_DRIVEN, channel_weights

    chosen = model or list(DATA_DRIVEN)
    unknown = sorted(set(chosen) - set(DATA_DRIVEN))
    if unknown:
        raise typer.BadParameter(f"not data-driven: {', '.join(unknown)}", param_hint="--model")
    cfg = settings()
    engine = make_engine(cfg.database_url)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        for model_id in chosen:
            fit_id = request_fit(session, model_id, now=datetime.now(UTC))
            record_audit(session, None, "model.fit", f"model:{model_id}", {"fit_id": fit_id})
    done = run_requested_fits(sessions, cfg)
    with sessions() as session:
        for fit_id in done:
            row = session.get(ModelFitRow, fit_id)
            if row is None:
                continue
            inputs = orjson.loads(row.inputs)
            table = Table(
                title=f"{row.model_id} (snapshot {row.id}, {inputs['paths']} paths: "
                f"{inputs['won_deals']} won, {inputs['lost_deals']} lost)"
            )
            table.add_column("channel")
            table.add_column("removal effect" if row.model_id == "markov" else "Shapley value")
            weights = channel_weights(row.model_id, orjson.loads(row.results))
            for channel, value in sorted(weights.items(), key=lambda kv: -kv[1]):
                table.add_row(channel, f"{float(value):.6f}")
            console.print(table)
    engine.dispose()


@app.command()
def simulate(
    url: str = typer.Option("http://127.0.0.1:8001", help="Ingest service URL."),
    api_key: str = typer.Option(..., envvar="CLOSEDLOOP_API_KEY", help="An ingest key."),
    deals: int = typer.Option(300, help="Deals to simulate."),
    seed: int = typer.Option(1, help="Random seed (same seed, same events)."),
    duplicates: float = typer.Option(0.05, help="Share of events delivered twice."),
    days: int = typer.Option(120, help="Days of history, ending today."),
    batch_size: int = typer.Option(500, help="Events per request."),
) -> None:
    """Post synthetic CRM traffic (shuffled, with duplicates) to the ingest API."""
    from services.simulate import generate, post_events, shuffle_with_duplicates

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days
    )
    events = generate(seed=seed, deals=deals, start=start, days=days)
    arrivals = shuffle_with_duplicates(events, seed=seed, duplicate_rate=duplicates)
    accepted = post_events(arrivals, url=url, api_key=api_key, batch_size=batch_size)
    console.print(
        f"[green]{accepted} events accepted[/green] "
        f"({len(events)} distinct, {len(arrivals) - len(events)} duplicates)"
    )


if __name__ == "__main__":
    app()
