"""Process logging: one concise line per meaningful event by default, everything when verbose.

By default a newcomer running ``closedloop up`` should read the URLs, the key, a progress bar and
then what the pipeline does (batches applied, fits, retries), not kafka-python's connection
chatter or one access-log line per request. ``CLOSEDLOOP_VERBOSE=1`` (``closedloop up
--verbose``) restores every library's INFO logs and the HTTP access log.
"""

from __future__ import annotations

import logging

# Libraries whose INFO lines describe their own plumbing, and the level they keep by default.
# kafka-python logs every failed connection attempt of an outage as an error, several a second;
# the worker's and ingest's own lines say it once per back-off, so it is silenced by default.
_QUIET_LEVELS = {
    "kafka": logging.CRITICAL,
    "uvicorn.error": logging.WARNING,
    "alembic": logging.WARNING,
}


def configure_logging(*, verbose: bool, process: str) -> None:
    """Set up the root logger of one process (``process`` names it in every line)."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {process:<7} %(levelname)-7s %(message)s"
        if not verbose
        else f"%(asctime)s {process} %(levelname)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for name, level in _QUIET_LEVELS.items():
        logging.getLogger(name).setLevel(logging.INFO if verbose else level)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if verbose else logging.WARNING)


def uvicorn_log_options(*, verbose: bool) -> dict[str, object]:
    """Return uvicorn options that keep our logging set-up and its access-log choice."""
    return {
        "log_config": None,
        "access_log": verbose,
        "log_level": "info" if verbose else "warning",
    }
