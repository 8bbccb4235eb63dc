"""vcmtool: encoder-side toolchain for video coding for machines.

The public Python API (``vcmtool.encode``, ``vcmtool.qpmaps``, ``vcmtool.open_video``) lives in
:mod:`vcmtool.api`; it is imported on first use so that ``import vcmtool`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "encode", "open_video", "qpmaps"]


def __getattr__(name: str) -> Any:
    if name in ("encode", "qpmaps", "open_video"):
        from vcmtool import api

        return getattr(api, name)
    raise AttributeError(f"module 'vcmtool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
