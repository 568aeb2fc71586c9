"""Static facts the simulator draws from: channels, campaign names, touch types, FX anchors.

Nothing here is random; ``generator`` combines these with a seeded ``random.Random``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Channel:
    """How a marketing or sales channel behaves in the simulated funnel."""

    slug: str
    names: tuple[str, ...]
    touch_types: tuple[str, ...]
    monthly_cost: tuple[int, int]  # range of a month's spend, in reporting-currency units
    sales_sourced: bool = False
    one_off_cost: bool = False  # an event is paid for once, for its own dates, not monthly


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "paid_search",
        (
            "Google Ads: Brand",
            "Google Ads: Competitor terms",
            "Google Ads: Revenue attribution",
            "Bing Ads: Generic",
            "Google Ads: Retargeting",
        ),
        ("ad_click",),
        (4_000, 20_000),
    ),
    Channel(
        "paid_social",
        (
            "LinkedIn: ABM tier 1",
            "LinkedIn: Lead gen forms",
            "Meta: Lookalike audiences",
            "LinkedIn: Thought leadership",
            "X: Promoted posts",
        ),
        ("ad_click", "lead_form"),
        (3_000, 15_000),
    ),
    Channel(
        "email",
        (
            "Nurture: New leads",
            "Newsletter: Monthly",
            "Product launch announcement",
            "Re-engagement sequence",
            "Trial nurture",
        ),
        ("email_click", "email_reply"),
        (300, 1_500),
    ),
    Channel(
        "webinar",
        (
            "Webinar: Attribution 101",
            "Webinar: Pipeline forecasting",
            "Webinar: RevOps roundtable",
            "Webinar: Customer panel",
        ),
        ("webinar_registered", "webinar_attended"),
        (1_000, 5_000),
    ),
    Channel(
        "events",
        (
            "SaaStr Annual: Booth",
            "Dreamforce: Sponsorship",
            "Field dinner: London",
            "Roadshow: Berlin",
            "Pavilion Summit",
        ),
        ("booth_scan", "event_attended", "meeting"),
        (8_000, 45_000),
        one_off_cost=True,
    ),
    Channel(
        "content",
        (
            "Ebook: State of B2B attribution",
            "Report: Pipeline benchmarks",
            "Guide: Multi-touch models",
            "Template: ROI calculator",
            "Case study library",
        ),
        ("content_download", "form_fill"),
        (1_000, 6_000),
    ),
    Channel(
        "organic_search",
        ("Organic: Blog", "Organic: Pricing page", "Organic: Docs", "SEO: Comparison pages"),
        ("page_view", "form_fill"),
        (0, 2_000),
    ),
    Channel(
        "outbound_sales",
        (
            "Outbound: SDR enterprise",
            "Outbound: SDR mid-market",
            "AE prospecting",
            "Outbound: Intent signals",
        ),
        ("meeting", "call", "sales_email_reply"),
        (8_000, 25_000),
        sales_sourced=True,
    ),
    Channel(
        "partner",
        (
            "Partner: Agency referrals",
            "Partner: Marketplace listing",
            "Partner: Reseller EMEA",
            "Partner: Co-marketing",
        ),
        ("referral", "meeting"),
        (1_000, 5_000),
    ),
)
CHANNEL_BY_SLUG = {channel.slug: channel for channel in CHANNELS}

# Relative weight of each channel for extra campaigns beyond one per channel.
CAMPAIGN_MIX = {
    "paid_search": 5,
    "paid_social": 4,
    "email": 4,
    "webinar": 3,
    "events": 3,
    "content": 4,
    "organic_search": 2,
    "outbound_sales": 3,
    "partner": 2,
}
# Which channels touch a journey at each phase (weights): how leads are created, how they are
# nurtured before the deal, how the deal is worked, and account-level (ABM) touches.
FIRST_TOUCH_MIX = {
    "paid_search": 20,
    "organic_search": 16,
    "content": 14,
    "paid_social": 10,
    "events": 8,
    "webinar": 8,
    "partner": 6,
    "email": 3,
}
NURTURE_MIX = {
    "email": 25,
    "webinar": 15,
    "content": 12,
    "paid_social": 12,
    "paid_search": 10,
    "organic_search": 10,
    "events": 6,
    "outbound_sales": 8,
    "partner": 2,
}
WORKING_MIX = {
    "outbound_sales": 35,
    "email": 20,
    "webinar": 12,
    "events": 10,
    "content": 8,
    "paid_social": 8,
    "paid_search": 5,
    "organic_search": 2,
}
ACCOUNT_MIX = {"paid_social": 50, "events": 25, "paid_search": 15, "partner": 10}

DEAL_STAGES = ("discovery", "proposal", "negotiation", "contract_sent")

# Approximate value of one unit of each currency in USD, the start of each FX random walk.
USD_VALUE: dict[str, Decimal] = {
    "USD": Decimal("1"),
    "EUR": Decimal("1.085"),
    "GBP": Decimal("1.27"),
    "CHF": Decimal("1.12"),
    "CAD": Decimal("0.74"),
    "AUD": Decimal("0.66"),
    "NZD": Decimal("0.61"),
    "SGD": Decimal("0.74"),
    "SEK": Decimal("0.096"),
    "NOK": Decimal("0.094"),
    "DKK": Decimal("0.145"),
    "PLN": Decimal("0.25"),
    "JPY": Decimal("0.0068"),
    "INR": Decimal("0.012"),
    "BRL": Decimal("0.20"),
    "MXN": Decimal("0.058"),
}
