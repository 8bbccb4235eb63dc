"""Post-encode side streams: bits a learned sender adds inside the bitstream (SEI) or beside it,
counted in every rate, and the receivers that use them.

``cdre`` (sender, payload format, SEI transport, ``SIDE_STREAMS`` by name), ``cdre_model`` (the
networks, torch) and ``cdre_receiver`` (decoder-side detection). Training is in
:mod:`vcmtool.lab.cdre`, which nothing here imports.
"""

from __future__ import annotations

from collections.abc import Callable


def get_side_stream(spec: str) -> Callable[..., dict] | None:
    """The post-encode hook for ``--side-stream SPEC`` (None for ``none``)."""
    if spec == "none":
        return None
    from vcmtool.errors import UsageError
    from vcmtool.sidestreams.cdre import SIDE_STREAMS

    try:
        return SIDE_STREAMS[spec]
    except KeyError:
        raise UsageError(
            f"--side-stream {spec}: use none, {', '.join(SIDE_STREAMS)} or cdre:fd|joint|DIR"
        ) from None


__all__ = ["get_side_stream"]
