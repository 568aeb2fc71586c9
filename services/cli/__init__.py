"""The ``closedloop`` console command: one entry point for every process and tool."""

from services.cli.main import app

__all__ = ["app"]
