"""The attribution models in force: built-ins from the domain plus user-defined ones in the DB."""

from __future__ import annotations

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.attribution.domain import (
    AttributionModel,
    builtin_models,
    make_positional_model,
)
from services.core.db.schema import AttributionModelRow
from services.core.db.upsert import upsert
from services.core.settings import Settings


def sync_builtin_models(session: Session, settings: Settings) -> None:
    """Write the built-in model definitions (with current settings) into ``attribution_models``."""
    models = builtin_models(half_life_days=settings.half_life_days)
    upsert(
        session,
        AttributionModelRow,
        [
            {
                "model_id": m.model_id,
                "kind": m.kind,
                "params": orjson.dumps(m.params()).decode(),
                "description": m.description,
                "builtin": True,
                "position": i,
            }
            for i, m in enumerate(models)
        ],
    )
    session.execute(
        delete(AttributionModelRow).where(
            AttributionModelRow.builtin.is_(True),
            AttributionModelRow.model_id.not_in([m.model_id for m in models]),
        )
    )


def active_models(session: Session, settings: Settings) -> list[AttributionModel]:
    """Return every model whose credits the worker maintains: built-ins, then custom ones."""
    models: list[AttributionModel] = list(builtin_models(half_life_days=settings.half_life_days))
    custom = session.scalars(
        select(AttributionModelRow)
        .where(AttributionModelRow.builtin.is_(False), AttributionModelRow.kind == "positional")
        .order_by(AttributionModelRow.position, AttributionModelRow.model_id)
    )
    for row in custom:
        models.append(
            make_positional_model(
                row.model_id, orjson.loads(row.params), description=row.description
            )
        )
    return models
