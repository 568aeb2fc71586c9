"""Synthetic CRM traffic: generate canonical events, deliver them shuffled and twice, post them."""

from services.simulate.delivery import batches, shuffle_with_duplicates
from services.simulate.generator import generate
from services.simulate.post import PostError, post_events

__all__ = ["PostError", "batches", "generate", "post_events", "shuffle_with_duplicates"]
