"""Run an exported JRD predictor (SNN-JRD or EL-JRD ONNX) with onnxruntime; no torch.

The ONNX file takes ``fp`` (1, 3, H, W) float32, H and W multiples of 64 (see
:func:`vcmtool.qpmap.prior.model_input`), and returns ``qp`` (1, H/64, W/64) float32 QPs in the
domain of the dataset it was trained on; that domain (``codec``, ``qp_max``) and the model kind
are stored in the file's metadata. The CUDA provider is used when onnxruntime has it (the
``[gpu]`` extra installs onnxruntime-gpu); session options: :func:`ort_session_options`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcmtool.errors import ModelError
from vcmtool.modelfiles import model_path
from vcmtool.tasks.base import ort_session_options

# The shipped models per kind, by the coding their labels came from (docs/design.md, "JRD
# labels"): "intra" labels code each frame alone; "lowdelay" labels code whole chunks as P frames
# after one I frame, as `vcmtool encode` does by default. A model records its label coding in its
# metadata (``label_coding``); ``auto`` uses the intra one unless ``--jrd-labels`` says otherwise
# (``match``: the one of the encode's coding, :func:`label_coding`).
DEFAULT_MODELS = {"snn": model_path("snn_jrd.onnx"), "eljrd": model_path("eljrd.onnx")}
LOWDELAY_MODELS = {"snn": model_path("snn_jrd_lowdelay.onnx"), "eljrd": model_path("eljrd_lowdelay.onnx")}
SHIPPED_MODELS = {"intra": DEFAULT_MODELS, "lowdelay": LOWDELAY_MODELS}


def label_coding(intra_period: int) -> str:
    """The label set that matches an encode with this intra period: "intra" for all-intra
    coding (1), "lowdelay" otherwise (0: one I frame; N > 1: mostly P frames between I frames)."""
    return "intra" if intra_period == 1 else "lowdelay"


def providers() -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class JrdPredictor:
    """One onnxruntime session on a JRD model file; ``predict(fp) -> (gh, gw)`` float QPs."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(
                f"{self.path}: JRD model file missing; run `vcmtool jrd export` "
                "or reinstall vcmtool (it ships vcmtool/models/)"
            )
        so = ort_session_options(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers())
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for bad files
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            raise ModelError(
                f"{self.path}: not a valid ONNX JRD model ({first}); re-export it with `vcmtool jrd export`"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.qp_max = int(meta["qp_max"])
            self.codec = meta["codec"]
            self.kind = meta["kind"]
        except (KeyError, ValueError):
            raise ModelError(
                f"{self.path}: ONNX file lacks the JRD metadata (kind, codec, "
                "qp_max); export it with `vcmtool jrd export`"
            ) from None
        self.meta = dict(meta)
        self.input_name = self.session.get_inputs()[0].name

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def predict(self, fp: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(fp, np.float32)})[0]
        return out[0]

    def version(self) -> str:
        from vcmtool.provenance import md5_file

        return f"{self.kind}:{self.path.name}+{md5_file(self.path)[:8]}"


def to_codec_domain(qp: np.ndarray, model_qp_max: int, qp_range: tuple[int, int]) -> np.ndarray:
    """Round the model's QPs and fit them to the target codec's range.

    HEVC (0..51) and VVC (0..63) share the step-size scale up to 51, so a QP keeps its value;
    VVC-domain predictions for an HEVC target clamp at 51 (docs/design.md "QP maps"). A model's
    "no constraint" value (its qp_max) becomes the target's maximum.
    """
    q = np.rint(qp).astype(np.int16)
    q[q >= model_qp_max] = qp_range[1]
    return np.clip(q, qp_range[0], qp_range[1])


def regrid(grid64: np.ndarray, height: int, width: int, ctu: int) -> np.ndarray:
    """A 64x64-CTU map on another CTU grid: each block takes the min of the 64-CTUs it touches."""
    if ctu == 64:
        return grid64
    from vcmtool.qpmap.raster import grid_shape

    gh, gw = grid_shape(height, width, ctu)
    rows = [(r * ctu // 64, ((r + 1) * ctu - 1) // 64) for r in range(gh)]
    cols = [(c * ctu // 64, ((c + 1) * ctu - 1) // 64) for c in range(gw)]
    out = np.empty((gh, gw), grid64.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[i, j] = grid64[
                r0 : min(r1, grid64.shape[0] - 1) + 1, c0 : min(c1, grid64.shape[1] - 1) + 1
            ].min()
    return out
