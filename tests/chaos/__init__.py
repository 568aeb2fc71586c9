"""The reliability scenarios in their quick mode (``python -m chaos --quick``), one file each."""
