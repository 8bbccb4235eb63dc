"""``auto``: task-model prior + SNN-JRD (ONNX, onnxruntime) -> per-CTU JRD QP map.

``--qpmap auto`` uses ``vcmtool/models/snn_jrd.onnx``; ``auto:PATH`` another exported JRD model. Each
predicted frame costs one task-model detection (the PIA prior) and one SNN-JRD run; with
``--map-interval N`` only every N-th frame is predicted and the map is reused in between. The map
holds absolute QPs in the target codec's range (the model's domain converted, see
:func:`vcmtool.qpmap.jrd_model.to_codec_domain`); ``--qp-offset`` shifts it for rate points. Maps are
streamed frame by frame, so the pipeline predicts them while the encoder runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource

_SESSIONS: dict[str, object] = {}


def _predictor(path: Path):
    from vcmtool.qpmap.jrd_model import JrdPredictor

    key = str(path.resolve())
    if key not in _SESSIONS:
        _SESSIONS[key] = JrdPredictor(path)
    return _SESSIONS[key]


@QPMAP_SOURCES.register("auto")
class JrdSource(QPMapSource):
    name = "auto"
    kind = "snn"
    streams = True

    def __init__(self, arg: str | None = None) -> None:
        super().__init__(arg)
        self._versions: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    def model_path(self) -> Path:
        from vcmtool.qpmap.jrd_model import DEFAULT_MODELS

        return Path(self.arg) if self.arg else DEFAULT_MODELS[self.kind]

    def model_files(self) -> list[Path]:
        return [self.model_path()]

    def process(self, clip: Clip, ctx: MapContext) -> QPMaps:
        return QPMaps(np.stack(list(self.stream(clip, ctx))), ctx.ctu)

    def stream(self, clip: Clip, ctx: MapContext) -> Iterator[np.ndarray]:
        from vcmtool.qpmap.jrd_model import regrid, to_codec_domain
        from vcmtool.qpmap.prior import MIN_SCORE, model_input
        from vcmtool.tasks import get_task_model

        predictor = _predictor(self.model_path())
        task = get_task_model(ctx.task_model, score_threshold=MIN_SCORE)
        self._versions = {"jrd_model": predictor.version(), "task_model": task.version,
                          "jrd_provider": predictor.provider}
        info = clip.info
        t_det = t_pred = 0.0
        self.predicted = 0
        last: np.ndarray | None = None
        try:
            for fr in tqdm(clip.frames(), total=info.frame_count, desc=f"{self.name} map", unit="f",
                           leave=False, disable=None):
                if last is None or fr.index % max(1, ctx.map_interval) == 0:
                    bgr = fr.to_bgr()
                    t0 = time.perf_counter()
                    det = task.detect(bgr)
                    t1 = time.perf_counter()
                    qp = predictor.predict(model_input(bgr, det))
                    t_det, t_pred = t_det + t1 - t0, t_pred + time.perf_counter() - t1
                    grid = to_codec_domain(qp, predictor.qp_max, ctx.qp_range)
                    last = regrid(grid, info.height, info.width, ctx.ctu)
                    self.predicted += 1
                yield last
        finally:
            # Also on early close, so a failed encode still reports what the models cost.
            self.timings = {"detect_s": round(t_det, 3), "predict_s": round(t_pred, 3)}
            self.predict_s = t_det + t_pred

    def versions(self) -> dict[str, str]:
        return {**self._versions, **{k: str(v) for k, v in self.timings.items()}}
