"""Just recognizable distortion (JRD): per-instance labels, the dataset builder and its format."""
