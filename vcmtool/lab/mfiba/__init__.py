"""MFIBA experiments: fitting the task loss-rate models from multi-pass coding, target-rate
evaluation and split-inference feature coding. The runtime allocation is
:mod:`vcmtool.ratecontrol`."""
