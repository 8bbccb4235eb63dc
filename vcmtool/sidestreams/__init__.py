"""Post-encode side streams: bits a learned sender adds inside the bitstream (SEI) or beside it,
counted in every rate, and the receivers that use them.

``registry`` (``SIDE_STREAMS``: the streams by name), ``cdre`` (sender, payload format, SEI
transport), ``cdre_model`` (the networks, torch) and ``cdre_receiver`` (decoder-side detection);
``vcs`` (the VCS semantic stream: sender, payload format), ``vcs_model`` (Sem-Enc and LFN, torch)
and ``vcs_receiver`` (enhanced frames for any task model). Training is in :mod:`vcmtool.lab`,
which nothing here imports.
"""

from __future__ import annotations

from collections.abc import Callable


def get_side_stream(spec: str) -> Callable[..., dict] | None:
    """The post-encode hook for ``--side-stream SPEC`` (None for ``none``)."""
    if spec == "none":
        return None
    from vcmtool.errors import UsageError
    from vcmtool.sidestreams.registry import SIDE_STREAMS

    try:
        return SIDE_STREAMS[spec]
    except KeyError:
        raise UsageError(
            f"--side-stream {spec}: use none, {', '.join(SIDE_STREAMS)} or cdre:fd|joint|distill|DIR, vcs:DIR"
        ) from None


__all__ = ["get_side_stream"]
