"""Webhook providers by name: each module maps one CRM's deliveries to canonical events."""

from __future__ import annotations

from services.ingest.providers import generic, hubspot, pipedrive, salesforce, segment
from services.ingest.providers.base import Provider

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        generic.PROVIDER,
        hubspot.PROVIDER,
        pipedrive.PROVIDER,
        salesforce.PROVIDER,
        segment.PROVIDER,
    )
}
