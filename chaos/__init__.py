"""The reliability suite: faults and load against real processes, checked against a ledger.

``python -m chaos [--quick] [--only NAME]`` (``make chaos``); see ``RELIABILITY.md``.
"""
