"""Bench methods: what one curve of the grid is, beyond the codec and the rate points.

A method says how a point is encoded (its QP-map source and post-encode side stream) and who
detects on the result (the bench's task model on the decoded frames, or a receiver that also
reads the side stream). Every QP-map source name is a method of its own (``none`` is the
anchor); ``KIND`` / ``KIND:ARG`` specs of :data:`METHOD_KINDS` add the others:

* ``cdre``, ``cdre:fd``, ``cdre:joint``, ``cdre:PATH`` - the plain codec (uniform QP) plus the
  CDRE side stream in SEI, scored with the CDRE receiver (bits extracted from the bitstream,
  the variant's decoder, and for ``joint`` its fine-tuned detector). Shown as ``cdre-fd``,
  ``cdre-joint`` (``cdre:PATH`` keeps its spec as its name).
* ``vcs``, ``vcs:PATH`` - the plain codec plus the VCS semantic stream in SEI; the receiver's
  enhanced frames (latent fusion network on decoded frames + bits) are what the task model and
  every judge see: VCS is task-decoupled. ``lfn``, ``lfn:PATH`` - the same receiver fed zeros
  on the plain codec (no stream): the enhancement-only baseline.

``METHOD@SCALE`` (``none@0.75``, ``roi@auto``) is METHOD coded at that spatial scale
(``vcmtool encode --scale``), upsampled back at the receiver before it is judged: a curve of its
own, with BD figures against the full-size anchor ``none``. ``bench --scales`` makes these names.
Methods with their own receiver (cdre) do not combine with a scale.

Names are canonical specs: ``resolve(resolve(s).name)`` is the same method, so a stored
config resumes.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcmtool.io.frame import Frame
from vcmtool.registry import parse_spec

ANCHOR = "none"

# detections on decoded BGR frames, given the bitstream (for what it carries beside the video)
# (stream, codec, decoded BGR frames, score threshold, policy for frames without a payload)
Receive = Callable[[Path, str, Sequence[np.ndarray], float, str], tuple[list, str]]
# the frames a receiver hands any task model, given the bitstream and its codec
Present = Callable[[Path, str], Iterator[Frame]]


@dataclass(frozen=True)
class BenchMethod:
    name: str
    qpmap: str = ANCHOR
    side_stream: str = "none"
    receiver: Receive | None = None  # None: the bench task model on the decoded frames
    identity: str = ""  # fingerprint of model files: a retrained model invalidates stored points
    task_models: tuple[str, ...] = ()  # bench task models it can be compared under (empty: any)
    scale: str = "1"  # spatial resampling ("0.75", "auto"; vcmtool.resample), "1": none
    present: Present | None = None  # None: the decoded frames (upsampled when scaled)

    @property
    def follows_offsets(self) -> bool:
        """Whether ``--qp-offsets`` moves this curve (map sources) or it sweeps ``--qps`` (uniform)."""
        return self.qpmap != ANCHOR


@functools.cache
def _fingerprint(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    return _fingerprint(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _cdre_detector(decoder: str, score_threshold: float):
    from vcmtool.sidestreams.cdre_receiver import CdreDetector

    return CdreDetector(decoder, score_threshold=score_threshold)


def _cdre_receive(decoder: Path) -> Receive:
    def receive(stream: Path, codec: str, frames: Sequence[np.ndarray], score_threshold: float, missing: str):
        from vcmtool.sidestreams.cdre_receiver import detect_with_side_stream

        det = _cdre_detector(str(decoder), score_threshold)
        return detect_with_side_stream(det, stream, codec, frames, missing=missing), det.version

    return receive


def _cdre(arg: str) -> BenchMethod:
    from vcmtool.sidestreams.cdre import CDRE_MODELS, cdre_model

    m = cdre_model(arg or "fd")
    name = f"cdre-{m.name}" if m.name in CDRE_MODELS else f"cdre:{m.name}"
    return BenchMethod(
        name,
        ANCHOR,
        f"cdre:{m.name}",
        _cdre_receive(m.decoder),
        f"{file_fingerprint(m.encoder)}|{file_fingerprint(m.decoder)}",
        ("yolov3-tiny", "yolov3-tiny-torch"),
    )


@functools.lru_cache(maxsize=4)
def _vcs_receiver(decoder: str):
    from vcmtool.sidestreams.vcs_receiver import VcsReceiver

    return VcsReceiver(decoder, threads=1)


def _vcs_present(decoder: Path, with_stream: bool) -> Present:
    def present(stream: Path, codec: str) -> Iterator[Frame]:
        from vcmtool.decode import decoded_frames
        from vcmtool.sidestreams.vcs import bits_by_frame, extract_from_bitstream

        rec = _vcs_receiver(str(decoder))
        bits = bits_by_frame(extract_from_bitstream(stream, codec), rec.probs) if with_stream else None
        bgrs = (f.to_bit_depth(8).to_bgr() for f in decoded_frames(stream, 8))
        for i, bgr in enumerate(rec.enhance(bgrs, bits)):
            yield Frame.from_bgr(bgr, i)

    return present


def _vcs_method(arg: str, with_stream: bool) -> BenchMethod:
    from vcmtool.sidestreams.vcs import vcs_model

    m = vcs_model(arg or "default")
    kind = "vcs" if with_stream else "lfn"
    name = kind if m.name == "default" else f"{kind}:{m.name}"
    return BenchMethod(
        name,
        ANCHOR,
        name if with_stream else "none",
        identity=f"{file_fingerprint(m.encoder)}|{file_fingerprint(m.decoder)}",
        present=_vcs_present(m.decoder, with_stream),
    )


def present_frames(method: BenchMethod, stream: Path, codec: str) -> Iterator[Frame]:
    """What the task model and every judge see for a point of ``method``."""
    if method.present is not None:
        return method.present(stream, codec)
    from vcmtool.resample import upsampled_frames

    return upsampled_frames(stream, 8)


METHOD_KINDS: dict[str, Callable[[str], BenchMethod]] = {
    "cdre": _cdre,
    "vcs": functools.partial(_vcs_method, with_stream=True),
    "lfn": functools.partial(_vcs_method, with_stream=False),
}


_SCALE_TAIL = re.compile(r"[-+0-9.eE]+|auto|nan|inf", re.IGNORECASE)


def split_scale(spec: str) -> tuple[str, str | None]:
    """``("roi", "0.75")`` for ``roi@0.75``; ``(spec, None)`` for a name without a scale."""
    base, at, scale = spec.rpartition("@")
    if at and base and _SCALE_TAIL.fullmatch(scale):
        return base, scale
    return spec, None


def scaled_name(method: str, scale: str) -> str:
    """The method ``method`` coded at ``scale`` (canonical, see vcmtool.resample): its name."""
    return method if scale == "1" else f"{method}@{scale}"


@functools.cache
def resolve(spec: str) -> BenchMethod:
    """A method from its spec; anything that is not a method kind must be a QP-map source."""
    base, scale = split_scale(spec)
    if scale is not None:
        from dataclasses import replace

        from vcmtool.errors import UsageError
        from vcmtool.resample import canonical_scale

        scale = canonical_scale(scale, f"method {spec}: scale")
        m = resolve(base)
        if scale == "1":
            return m
        if m.receiver is not None or m.present is not None:
            raise UsageError(f"method {spec}: {m.name} scores with its own receiver; it takes no scale")
        identity = m.identity
        if scale == "auto":  # a changed rule must not reuse points chosen by the old one
            from vcmtool.resample import AUTO_RULE

            identity = "|".join(x for x in (identity, f"scale-rule:{AUTO_RULE}") if x)
        return replace(m, name=scaled_name(m.name, scale), scale=scale, identity=identity)
    parsed = parse_spec(spec, "bench method")  # "cdre:joint"
    if parsed.name in METHOD_KINDS:
        return METHOD_KINDS[parsed.name](parsed.arg)
    kind, _, arg = spec.partition("-")  # a display name, "cdre-joint", read back from a report
    if kind in METHOD_KINDS and arg:
        return METHOD_KINDS[kind](arg)
    from vcmtool.qpmap.sources import get_source

    src = get_source(spec)  # unknown names fail here, with the list of known ones
    files = [f for f in src.model_files() if f.is_file()]  # a missing one fails at encode time
    return BenchMethod(spec, qpmap=spec, identity="|".join(file_fingerprint(f) for f in files))
