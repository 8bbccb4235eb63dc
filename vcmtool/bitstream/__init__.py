"""Bitstream tools: Annex-B NAL units, access units and vcmtool's SEI side data."""

from vcmtool.bitstream.annexb import (
    CODECS,
    VCMTOOL_UUID,
    access_units,
    extract_sei,
    extract_sei_by_au,
    insert_sei,
    split_nal_units,
    strip_sei,
)

__all__ = [
    "CODECS",
    "VCMTOOL_UUID",
    "access_units",
    "extract_sei",
    "extract_sei_by_au",
    "insert_sei",
    "split_nal_units",
    "strip_sei",
]
