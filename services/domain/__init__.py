"""Pure attribution domain: journeys, roles, models and exact credit allocation.

Invariants: every function here maps values to values (no I/O, no clock, no logging,
no database or messaging imports; standard library only); money is integer minor units
and weights are exact ``Fraction`` values, so a deal's credits always sum to its amount.
"""

from __future__ import annotations

from .allocation import split_cents
from .attribute import TouchCredit, attribute, attribute_all, campaign_credits, role_labels
from .journey import (
    ROLE_FIRST,
    ROLE_LAST,
    ROLE_LEAD_CREATION,
    ROLE_MIDDLE,
    ROLE_OPPORTUNITY_CREATION,
    ROLES,
    UNKNOWN_CHANNEL,
    Touch,
    assign_roles,
    journey_channels,
    order_touches,
    select_journey,
)
from .models import (
    BUILTIN_POSITIONAL,
    WEIGHT_KEYS,
    AttributionModel,
    InvalidModelDefinition,
    PositionalModel,
    TimeDecayModel,
    builtin_models,
    make_positional_model,
    model_weights,
    positional_weights,
    time_decay_weights,
)

__all__ = [
    "BUILTIN_POSITIONAL",
    "ROLES",
    "ROLE_FIRST",
    "ROLE_LAST",
    "ROLE_LEAD_CREATION",
    "ROLE_MIDDLE",
    "ROLE_OPPORTUNITY_CREATION",
    "WEIGHT_KEYS",
    "AttributionModel",
    "InvalidModelDefinition",
    "PositionalModel",
    "UNKNOWN_CHANNEL",
    "TimeDecayModel",
    "Touch",
    "TouchCredit",
    "assign_roles",
    "attribute",
    "attribute_all",
    "builtin_models",
    "campaign_credits",
    "journey_channels",
    "make_positional_model",
    "model_weights",
    "order_touches",
    "positional_weights",
    "role_labels",
    "select_journey",
    "split_cents",
    "time_decay_weights",
]
