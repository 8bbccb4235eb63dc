#!/usr/bin/env bash
# Re-record examples/ci/golden.json (after an intended change of the bytes, e.g. an encoder
# upgrade). Backends whose path does not depend on the native x264/x265 drivers only, so the
# golden is the same with or without them. --record forces --threads 1.
set -euo pipefail
cd "$(dirname "$0")"
rm -f golden.json
vcm() { python -m vcmtool encode clip.y4m --no-measure --record golden.json "$@" >/dev/null 2>&1; }
vcm -c kvazaar --qp 32 -o out/kvazaar-qp32.hevc
vcm -c kvazaar --qpmap file:map.csv -o out/kvazaar-map.hevc
vcm -c kvazaar --qp 30 --intra-period 1 -o out/kvazaar-intra.hevc
vcm -c vvenc --qp 32 -o out/vvenc-qp32.266
echo "recorded $(python -c 'import json; print(len(json.load(open("golden.json"))["entries"]))') entries"
