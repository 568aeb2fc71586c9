"""``python -m services <command>``: the ``closedloop`` command without the console script.

``closedloop up`` starts its child processes this way: running ``-m services.cli.main`` would
import that module twice (once through the ``services.cli`` package), which Python warns about.
"""

from services.cli.main import app

app(prog_name="closedloop")
