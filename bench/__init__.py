"""Benchmarks of Closed Loop on this machine; ``python -m bench [--quick]``."""
