"""Print a saved encode report (``vcmtool encode --json`` output) as the human summary table."""

from __future__ import annotations

import json
import sys

from vcmtool.cli.summary import print_encode_summary

if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "demo-out/report.json") as f:
        print_encode_summary(json.load(f))
