"""Maps between predicted frames (``vcmtool.qpmap.propagate``): objects' QPs move with them, the
adaptive interval predicts again at a cut, runs are reproducible, ``--map-interval 1`` is the
per-frame prediction it always was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_crop_y4m
from vcmtool.decode import decoded_frames, psnr
from vcmtool.errors import UsageError
from vcmtool.io import open_video
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.y4m import write_y4m
from vcmtool.jobcheck import check_job
from vcmtool.pipeline import EncodeJob
from vcmtool.qpmap.propagate import Keyframe, MapInterval, Propagator, parse_map_interval
from vcmtool.qpmap.qpm import read_qpm
from vcmtool.qpmap.sources import MapContext, get_source

# A bright noisy square crossing a textured, static background to the right, 8 px a frame.
W, H, SIDE, SPEED, X0, Y0, FRAMES = 512, 128, 64, 8, 64, 32, 16


def square_box(t: int) -> list[float]:
    x = X0 + SPEED * t
    return [float(x), float(Y0), float(x + SIDE), float(Y0 + SIDE)]


@pytest.fixture(scope="module")
def moving_square(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    background = rng.integers(40, 120, (H, W), dtype=np.uint8)
    # a new texture every frame: motion compensation cannot carry it, its QP decides its quality
    textures = rng.integers(150, 255, (FRAMES, SIDE, SIDE), dtype=np.uint8)
    out = tmp_path_factory.mktemp("square") / "square.y4m"

    def frames():
        for t in range(FRAMES):
            y = background.copy()
            x = X0 + SPEED * t
            y[Y0 : Y0 + SIDE, x : x + SIDE] = textures[t]
            c = np.full((H // 2, W // 2), 128, np.uint8)
            yield Frame(y, c, c.copy(), t)

    with open(out, "wb") as f:
        write_y4m(f, VideoInfo(W, H, 25, "yuv420p", FRAMES), frames())
    return out


def _dets(path: Path, boxes: dict[int, list[float]]) -> Path:
    lines = [json.dumps({"frame": t, "boxes": [[*b, 0.9, 0]]}) for t, b in boxes.items()]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _maps(clip_path: Path, spec: str, interval, **opts) -> tuple[np.ndarray, object]:
    src = get_source(spec, {"roi_margin": 0} if spec.startswith("dets:") else {})
    maps = src.process(open_video(str(clip_path)), MapContext(qp=32, ctu=64, map_interval=interval))
    return maps.data, src


def test_propagation_moves_the_qp_region_with_the_object(moving_square, tmp_path):
    dets = _dets(tmp_path / "d.jsonl", {t: square_box(t) for t in range(FRAMES)})
    every, _ = _maps(moving_square, f"dets:{dets}", 1)
    moved, src = _maps(moving_square, f"dets:{dets}", 8)
    assert src.keyframes == [0, 8]
    # one prediction so far: held; from the second on the box moves at the tracked 8 px/frame,
    # which is the true motion, so the moved boxes give the maps the true boxes give
    assert all(np.array_equal(moved[t], moved[0]) for t in range(8))
    assert np.array_equal(moved[8:], every[8:])
    cols = [set(np.nonzero((m < 32).any(axis=0))[0]) for m in moved]
    assert cols[0] == {1} and cols[8] == {2} and cols[9] == cols[15] == {2, 3}  # x 64, 128, 136..184

    # the bitstream follows: the square keeps its quality where a held map would lose it
    def encode(tag: str, boxes: dict[int, list[float]]) -> Path:
        out = tmp_path / f"{tag}.hevc"
        d = _dets(tmp_path / f"{tag}.jsonl", boxes)
        r = run_cli(
            "encode", str(moving_square), "--qpmap", f"dets:{d}", "--map-interval", "8",
            "--roi-qp-in", "24", "--roi-qp-out", "44", "--roi-margin", "0", "--preset", "ultrafast",
            "-o", str(out),
            "--no-measure", "-y",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return out

    tracked = encode("tracked", {0: square_box(0), 8: square_box(8)})
    held = encode("held", {0: square_box(8), 8: square_box(8)})  # no motion: the map stays put
    ref = list(open_video(str(moving_square)).frames())

    def square_psnr(bitstream: Path) -> float:
        dec = list(decoded_frames(bitstream))
        vals = []
        for t in range(12, FRAMES):
            x0, y0, x1, y1 = map(int, square_box(t))
            vals.append(psnr(ref[t].y[y0:y1, x0:x1], dec[t].y[y0:y1, x0:x1], 255))
        return float(np.mean(vals))

    gain = square_psnr(tracked) - square_psnr(held)
    assert gain > 3.0, gain


def test_auto_regions_move_and_leave_background():
    """``auto`` has no per-box QPs: its grid's object region is carried, the rest kept."""
    grid = np.full((2, 8), 50, np.int16)
    grid[0, 2] = grid[1, 2] = 30  # object A, moving right
    grid[1, 6] = 28  # object B, standing still
    boxes = np.array([[130.0, 10, 174, 100], [400, 70, 440, 110]])
    before = boxes - [[96, 0, 96, 0], [0, 0, 0, 0]]
    prop = Propagator(MapInterval(8), 128, 512, 64)
    assert prop.due(0) == "first"
    prop.keyframe(0, Keyframe(grid, before))
    assert prop.due(8) == "interval"
    prop.keyframe(8, Keyframe(grid, boxes))  # A moved 96 px in 8 frames: 12 px/frame
    assert np.array_equal(prop.at(9), grid)  # 142..186: still the same CTU column
    g = prop.at(14)  # 202..246: column 3
    assert (g[:, 2] == 50).all() and (g[:, 3] == 30).all()  # the region went with it
    assert g[1, 6] == 28 and (g[:, [0, 1, 4, 5, 7]] == 50).all() and g[0, 6] == 50
    cut = Propagator(MapInterval(8, adaptive=True), 128, 512, 64)
    cut.keyframe(0, Keyframe(grid, before), "first")
    cut.keyframe(8, Keyframe(grid, boxes), "cut")  # a new scene: no motion carried over
    assert np.array_equal(cut.at(12), grid)


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    """8 frames of bikes, then 8 of bigbuckbunny (256x128 crops): one hard cut at frame 8."""
    d = tmp_path_factory.mktemp("cut")
    a = write_crop_y4m(d / "a.y4m", "bikes", 8)
    b = write_crop_y4m(d / "b.y4m", "bigbuckbunny", 8, crop=(600, 350, 256, 128))
    out = d / "cut.y4m"
    frames = [*open_video(str(a)).frames(), *open_video(str(b)).frames()]
    with open(out, "wb") as f:
        write_y4m(f, VideoInfo(256, 128, 25, "yuv420p", len(frames)), iter(frames))
    return out


def test_auto_interval_predicts_again_at_a_scene_cut(cut_clip):
    for spec in ("roi", "auto"):
        adaptive, src = _maps(cut_clip, spec, "auto")
        assert 8 in src.keyframes and src.keyframe_reasons.get("cut") == 1, (spec, src.keyframes)
        assert src.predicted < 16  # the rest were moved or held
        every, _ = _maps(cut_clip, spec, 1)
        assert np.array_equal(adaptive[8], every[8])  # the new scene's own map
    held, src = _maps(cut_clip, "roi", 16)
    assert src.keyframes == [0]  # a fixed interval never predicts early


def test_runs_give_identical_bytes(cut_clip, tmp_path):
    """The default (a map on every frame; `auto` runs the detector one frame ahead of SNN-JRD in
    a second thread) and the adaptive interval both give the same bytes twice."""
    reports = []
    for i in range(2):
        runs = (("roi", "kvazaar", "auto"), ("auto", "x265", "auto"), ("auto", "x265", None))
        for qpmap, codec, interval in runs:
            name = f"{qpmap}-{interval}-{i}"
            r = run_cli(
                "encode", str(cut_clip), "--qpmap", qpmap, "-c", codec, "--preset", "ultrafast",
                "-o", str(tmp_path / f"{name}.hevc"), "--qpm-out", str(tmp_path / f"{name}.qpm"),
                "--no-measure", "-y", "--json", *(("--map-interval", interval) if interval else ()),
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            reports.append(json.loads(r.stdout))
    for a, b in zip(reports[:3], reports[3:], strict=True):
        assert a["bytes"] == b["bytes"] and list(a["md5"].values()) == list(b["md5"].values())
    for adaptive in reports[:2]:
        assert adaptive["options"]["map_interval"] == "auto"
        t = adaptive["timing"]
        assert t["predicted_why"].get("cut") == 1 and t["frames_predicted"] < adaptive["frames"]
    default = reports[2]
    assert default["options"]["map_interval"] == 1
    assert default["timing"]["frames_predicted"] == default["frames"]
    for name in ("roi-auto-0", "auto-auto-0"):  # the new scene has a cat, the old one had nothing
        assert not np.array_equal(*read_qpm(tmp_path / f"{name}.qpm").data[[7, 8]]), name


def test_map_interval_1_is_per_frame_prediction(cut_clip):
    """``--map-interval 1``: each frame's own detections and model run, nothing else."""
    from vcmtool.qpmap.jrd_model import DEFAULT_MODELS, JrdPredictor, to_codec_domain
    from vcmtool.qpmap.prior import MIN_SCORE, model_input
    from vcmtool.qpmap.sources.roi import RoiOptions, boxes_to_map
    from vcmtool.tasks import get_task_model

    frames = list(open_video(str(cut_clip)).frames())
    roi, src = _maps(cut_clip, "roi", 1)
    assert src.predicted == len(frames) and src.keyframe_reasons == {"first": 1, "interval": 15}
    model = get_task_model("yolov3-tiny")
    for fr, m in zip(frames, roi, strict=True):
        det = model.detect(fr.to_bgr()).filter(0.3)
        assert np.array_equal(m, boxes_to_map(det.boxes, 128, 256, 64, RoiOptions(), 32))
    auto, _ = _maps(cut_clip, "auto", 1)
    jrd, task = JrdPredictor(DEFAULT_MODELS["snn"]), get_task_model("yolov3-tiny", score_threshold=MIN_SCORE)
    for fr in frames[::5]:
        bgr = fr.to_bgr()
        qp = to_codec_domain(jrd.predict(model_input(bgr, task.detect(bgr))), jrd.qp_max, (0, 51))
        assert np.array_equal(auto[fr.index], qp)


def test_map_interval_values():
    assert parse_map_interval("auto") == MapInterval(8, True) and parse_map_interval(1) == MapInterval(1)
    assert parse_map_interval(" AUTO:3 ").value == "auto:3" and parse_map_interval("auto:8").value == "auto"
    assert parse_map_interval("12").value == 12
    for bad in (0, "0", "auto:0", "auto:", "x", -3, 2.5, True, None, "auto:x"):
        with pytest.raises(UsageError, match="--map-interval"):
            parse_map_interval(bad)
    job = EncodeJob(input="x.y4m", map_interval="6")  # as a CSV manifest gives it
    check_job(job)
    assert job.map_interval == 6 and EncodeJob(input="x").map_interval == 1


def test_an_empty_prediction_is_checked_again_soon():
    """A uniform keyframe map (nothing to protect) is held for EMPTY_RECHECK frames only under
    ``auto``: a miss of the detector must not code the next N frames as background, whether
    the source kept no box or kept boxes its model mapped to background; a fixed interval
    holds it."""
    from vcmtool.qpmap.propagate import EMPTY_RECHECK

    grid = np.full((2, 8), 51, np.int16)
    prop = Propagator(MapInterval(8, adaptive=True), 128, 512, 64)
    prop.keyframe(0, Keyframe(grid, np.zeros((0, 4))), prop.due(0))
    assert [prop.due(k) for k in range(1, EMPTY_RECHECK + 1)] == [None] * (EMPTY_RECHECK - 1) + ["empty"]
    weak = Propagator(MapInterval(8, adaptive=True), 128, 512, 64)  # a box, but no region for it
    weak.keyframe(0, Keyframe(grid, np.array([[10.0, 10, 60, 60]])), weak.due(0))
    assert weak.due(EMPTY_RECHECK) == "empty"
    mapped = grid.copy()
    mapped[0, 0] = 30
    found = Propagator(MapInterval(8, adaptive=True), 128, 512, 64)
    found.keyframe(0, Keyframe(mapped, np.array([[10.0, 10, 60, 60]])), found.due(0))
    assert all(found.due(k) is None for k in range(1, 8)) and found.due(8) == "interval"
    fixed = Propagator(MapInterval(8), 128, 512, 64)
    fixed.keyframe(0, Keyframe(grid, np.zeros((0, 4))), fixed.due(0))
    assert all(fixed.due(k) is None for k in range(1, 8))
