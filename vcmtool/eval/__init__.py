"""Measuring task fidelity, shared by ``vcmtool bench``, the MFIBA and CDRE experiments:
``coco`` (pycocotools mAP against pseudo or real ground truth, person AP, bootstrap resamples over
frames) and ``bdrate`` (Bjontegaard deltas with the ``bjontegaard`` package, pchip, and their
bootstrap confidence intervals)."""
