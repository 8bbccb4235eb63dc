"""MFIBA experiments: fitting the task loss-rate models from multi-pass coding, target-rate
evaluation and split-inference feature coding. The runtime allocation is
:mod:`vcmtool.ratecontrol`.

``fit``, ``evaluate`` and ``features`` hold the per-image / per-clip work; ``experiments`` runs
the commands of ``vcmtool mfiba`` (loops, fits, BD-rates, JSON and Markdown) and ``plots``
draws their figures."""
