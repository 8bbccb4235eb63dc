"""vcmtool: encoder-side toolchain for video coding for machines."""

__version__ = "0.1.0"
