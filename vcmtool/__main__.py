"""``python -m vcmtool`` and the ``vcmtool`` console script.

Signals are routed before the (slow) imports of the command modules, so Ctrl-C or SIGTERM during
start-up ends with one line and the usual exit status instead of a traceback.
"""

from __future__ import annotations

import sys

from vcmtool import interrupts


def run() -> None:
    interrupts.install()
    try:
        from vcmtool.cli import main
    except KeyboardInterrupt as e:
        sys.stderr.write(f"vcmtool: {interrupts.describe(e)} during start-up\n")
        sys.exit(interrupts.exit_code(e))
    main()


if __name__ == "__main__":
    run()
