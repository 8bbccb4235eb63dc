#!/usr/bin/env bash
# Encode every .y4m under a folder in parallel with plain shell tools, one JSON report per clip.
#
#   examples/pipeline.sh CLIPS_DIR [OUT_DIR] [JOBS] [-- extra vcmtool encode options]
#
# Each encode writes its report to its own file (tmp + mv: a killed run leaves no half report),
# then the reports are joined into OUT_DIR/reports.jsonl. Clips that fail are listed and the
# script exits 1; the others are kept. The same with GNU parallel (which groups each job's
# output, so lines never interleave):
#   find clips -name '*.y4m' | parallel -j4 vcmtool encode {} --json -o out/{/.}.hevc > reports.jsonl
# For resumable batches with a summary, see `vcmtool batch` (a manifest, kill -9 safe).
set -euo pipefail
pos=()
while (( $# )) && [[ $1 != -- ]]; do pos+=("$1"); shift; done
(( $# )) && shift  # the "--"; what is left goes to vcmtool encode
src=${pos[0]:?usage: pipeline.sh CLIPS_DIR [OUT_DIR] [JOBS] [-- encode options]}
out=${pos[1]:-pipeline-out}
jobs=${pos[2]:-$(nproc)}
mkdir -p "$out"
out=$(realpath "$out")
export VCMTOOL_OUT=$out PYTHON=${PYTHON:-python3}

encode_one() {  # $1 = clip; the remaining arguments go to vcmtool encode
  local clip name; clip=$(realpath "$1"); shift
  name=$(basename "${clip%.*}")
  # run inside OUT_DIR: the bitstream gets vcmtool's default name, <clip>.<codec>.<ext>
  if (cd "$VCMTOOL_OUT" && "$PYTHON" -m vcmtool encode "$clip" --json "$@") \
       > "$VCMTOOL_OUT/.$name.json.part" 2> "$VCMTOOL_OUT/$name.log"; then
    mv "$VCMTOOL_OUT/.$name.json.part" "$VCMTOOL_OUT/$name.json"
  else
    rm -f "$VCMTOOL_OUT/.$name.json.part"; echo "$clip" >> "$VCMTOOL_OUT/failed.txt"
  fi
}
export -f encode_one

rm -f "$out/failed.txt"
find "$src" -name '*.y4m' -print0 | sort -z |
  xargs -0 -P "$jobs" -I{} bash -c 'encode_one "$@"' _ {} "$@"

cat "$out"/*.json > "$out/reports.jsonl" 2>/dev/null || true
"$PYTHON" - "$out/reports.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['input']:<40} {r['bytes']:>8} B  {r['bpp']:.4f} bpp  PSNR-Y {r['psnr_y'] or 0:.2f} dB")
PY
if [[ -s $out/failed.txt ]]; then
  echo "failed (see $out/<name>.log):" >&2; cat "$out/failed.txt" >&2; exit 1
fi
