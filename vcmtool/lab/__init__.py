"""Research code: dataset builders, training, exports and the experiments behind docs/results.md.

``lab.jrd`` builds the JRD dataset and trains/exports SNN-JRD and EL-JRD; ``lab.cdre`` trains and
evaluates the CDRE side stream; ``lab.mfiba`` fits MFIBA's task loss-rate models and runs its
experiments. The runtime (``vcmtool.pipeline`` and every stage below it) never imports this
package: an import-linter contract in ``make lint`` checks it. Only the CLI and benchmarks do.
"""
