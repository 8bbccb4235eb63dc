"""``--qpmap dets:FILE``: a user's own detections drive real encodes, like ``roi``'s do."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import half_psnr_gap, run_cli
from vcmtool.errors import InputError, UsageError
from vcmtool.io import open_video
from vcmtool.qpmap.qpm import read_qpm
from vcmtool.qpmap.sources import MapContext, get_source

FAST = ("--preset", "ultrafast")
LEFT = [0.0, 0.0, 128.0, 128.0]  # the left half of the 256x128 test clip (two 64px CTU columns)


def _jsonl(path, frames: dict[int, list[list]]):
    path.write_text("".join(json.dumps({"frame": i, "boxes": b}) + "\n" for i, b in frames.items()))
    return path


def _coco(path, entries: list[dict]):
    path.write_text(json.dumps(entries, indent=1))
    return path


def _coco_box(i: int, box=LEFT, cat: int = 1, score: float = 0.9) -> dict:
    x0, y0, x1, y1 = box
    return {"image_id": i, "category_id": cat, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score}


def _maps(path, arg: str, ctx: MapContext | None = None, **clip_kw) -> np.ndarray:
    clip = open_video(str(path), **clip_kw)
    return get_source(f"dets:{arg}").process(clip, ctx or MapContext(qp=32, ctu=64)).data


@pytest.mark.parametrize("fmt", ["jsonl", "coco"])
def test_box_over_left_half_encodes_left_sharper(fmt, bikes_y4m, tmp_path):
    if fmt == "jsonl":
        dets = _jsonl(tmp_path / "d.jsonl", {i: [[*LEFT, 0.9, 0]] for i in range(8)})
    else:
        dets = _coco(tmp_path / "d.json", [_coco_box(i) for i in range(8)])
    out, qpm = tmp_path / "a.hevc", tmp_path / "a.qpm"
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--qpmap",
        f"dets:{dets}",
        "--qp",
        "32",
        "--roi-margin",
        "0",
        "--roi-qp-in",
        "24",
        "--roi-qp-out",
        "40",
        "-o",
        str(out),
        "--qpm-out",
        str(qpm),
        "--json",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["qpmap"]["source"] == f"dets:{dets}" and rep["frames"] == 8
    m = read_qpm(qpm).data  # what was encoded: left half 24, right half 40 (kvazaar keeps 12 of 32)
    assert (m[:, :, :2] < m[:, :, 2:]).all()
    assert half_psnr_gap(bikes_y4m, out) > 3.0  # a uniform QP gives ~0.2 dB (conftest)


def test_frames_without_detections_get_background_and_skip_is_absolute(bikes_y4m, tmp_path):
    # detections only on source frames 3 and 5: with --skip 3 they are encoded frames 0 and 2
    dets = _coco(tmp_path / "d.json", [_coco_box(3), _coco_box(5)])
    m = _maps(bikes_y4m, str(dets), MapContext(options={"roi_margin": 0}), skip=3)
    assert m.shape[0] == 5
    for k in range(5):
        if k in (0, 2):
            assert (m[k][:, :2] == 28).all() and (m[k][:, 2:] == 38).all()
        else:
            assert (m[k] == 38).all()  # background QP (base + 6)
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--skip",
        "3",
        "--qpmap",
        f"dets:{dets}",
        "-o",
        str(tmp_path / "s.hevc"),
        "--qpm-out",
        str(tmp_path / "s.qpm"),
        "--json",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_qpm(tmp_path / "s.qpm").data[[0, 2]].min(axis=(1, 2)), [28, 28])


def test_boxes_are_clipped_margin_scores_classes_and_interval(bikes_y4m, tmp_path):
    dets = _jsonl(
        tmp_path / "d.jsonl",
        {
            0: [[-500, -500, 10, 10, 0.9, "person"], [250, 120, 9000, 9000, 0.2, "car"]],
            1: [[100, 0, 140, 20, 0.9, 2]],  # COCO-80 index 2 = car
            2: [[100, 0, 140, 20]],  # no score: 1.0, no class
        },
    )
    m = _maps(bikes_y4m, str(dets))
    assert m[0][0, 0] == 28 and (m[0].ravel()[1:] == 38).all()  # the low-score car is dropped
    assert (m[1][0, 1:3] == 28).all() and m[1][1].max() == 38
    ctx = MapContext(qp=32, ctu=64, options={"roi_classes": ["car"], "roi_min_score": 0.1})
    m = _maps(bikes_y4m, str(dets), ctx)
    assert m[0][1, 3] == 28 and m[0][0, 0] == 38 and m[1][0, 1] == 28 and (m[2] == 38).all()
    ctx = MapContext(qp=32, ctu=64, options={"roi_classes": ["2"], "roi_margin": 64})
    m = _maps(bikes_y4m, str(dets), ctx)  # a number is the file's own class id; margin grows
    assert (m[1] == 28).sum() == 8 and (m[0] == 38).all()
    m = _maps(bikes_y4m, str(dets), MapContext(qp=32, ctu=64, map_interval=2))
    assert np.array_equal(m[1], m[0]) and np.array_equal(m[3], m[2])  # reused as roi does


def test_coco_category_ids_map_to_names(bikes_y4m, tmp_path):
    dets = _coco(
        tmp_path / "d.json", [_coco_box(0, cat=1), _coco_box(1, cat=3), _coco_box(2, cat=90)]
    )  # person, car, toothbrush
    for cls, hit in (("person", 0), ("car", 1), ("toothbrush", 2), ("3", 1)):
        ctx = MapContext(qp=32, ctu=64, options={"roi_classes": [cls]})
        m = _maps(bikes_y4m, str(dets), ctx)
        assert [int(m[k].min()) for k in range(3)] == [28 if k == hit else 38 for k in range(3)], cls
    with pytest.raises(UsageError, match="unknown class name 'persn'"):
        _maps(bikes_y4m, str(dets), MapContext(options={"roi_classes": ["persn"]}))


def test_detections_past_the_clip_are_noted(bikes_y4m, tmp_path):
    dets = _jsonl(tmp_path / "d.jsonl", {0: [[*LEFT, 0.9, 0]], 8: [[*LEFT]], 12: [[*LEFT]]})
    r = run_cli("qpmap", str(bikes_y4m), "--qpmap", f"dets:{dets}", "-o", str(tmp_path / "a.qpm"))
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "2 frame(s) past the input's last frame 7" in err and "Traceback" not in err, err
    src = get_source(f"dets:{dets}")
    src.process(open_video(str(bikes_y4m), skip=1), MapContext())
    assert any("no detection" in n for n in src.notes())  # frame 0 is skipped, 8 and 12 past


def test_real_detector_output_gives_roi_maps(bikes_y4m, bus_jpg, tmp_path):
    """`vcmtool detect --json` into dets: is the same map as roi (all frames, then a --skip
    window of the same detections file: its frame numbers are the source's), predicted on
    every frame or every 3rd (boxes moved in between alike); under --map-interval auto, dets:
    uses every frame's detections while roi predicts only some frames."""
    for name, media, window in (
        ("bus", bus_jpg, ()),
        ("bikes", bikes_y4m, ()),
        ("bikes", bikes_y4m, ("--skip", "5", "--frames", "2")),
    ):
        det = run_cli("detect", str(media), "--json")
        assert det.returncode == 0, det.stderr
        dets = tmp_path / f"{name}.jsonl"
        dets.write_bytes(det.stdout)
        for extra in (
            ("--map-interval", "1"),
            ("--map-interval", "3", "--roi-classes", "person,bus", "--roi-margin", "8"),
        ):
            got = []
            for spec in ("roi", f"dets:{dets}"):
                out = tmp_path / f"{name}-{len(got)}.qpm"
                r = run_cli("qpmap", str(media), "--qpmap", spec, "-o", str(out), "-y", *window, *extra)
                assert r.returncode == 0, r.stderr
                got.append(read_qpm(out).data)
            assert np.array_equal(got[0], got[1]), (name, window, extra)
        if name == "bus":
            assert got[0].min() < got[0].max()  # the bus and its passengers are found


BAD = {
    "missing": (None, "no such file"),
    "coco-syntax": (
        '[\n {"image_id": 0, "bbox": [0, 0, 1, 1]},\n {"image_id": 1 "bbox": []}\n]',
        ":3: malformed JSON",
    ),
    "jsonl-syntax": (
        '{"frame": 0, "boxes": []}\n{"frame": 1, "boxes": [[0, 0, 1, 1]\n',
        ":2: malformed JSON",
    ),
    "coco-nan": (
        '[{"image_id": 0, "bbox": [0, 0, 1, 1]},\n {"image_id": 0, "bbox": [NaN, 0, 1, 1]}]',
        ":2: bbox value is nan",
    ),
    "jsonl-nan": ('{"frame": 0, "boxes": [[0, 0, NaN, 1, 0.5, 0]]}', ":1: box coordinate is nan"),
    "coco-negative": ('[{"image_id": 0, "bbox": [10, 0, -4, 1], "score": 1}]', "negative size"),
    "jsonl-negative": ('\n{"frame": 3, "boxes": [[10, 0, 5, 1]]}', ":2: box [10, 0, 5, 1] has a negative"),
    "negative-frame": ('{"frame": -1, "boxes": []}', "frame numbers start at 0"),
    "not-json": ("frame,x0,y0\n0,1,2\n", "not a detections file"),
    "empty": ("", "file is empty"),
    "deep": ("[" * 100_000, ":1: malformed JSON (nested too deeply)"),
    "huge-int": ('{"frame": ' + "9" * 5000 + ', "boxes": []}', ":1: malformed JSON (Exceeds"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_detections_are_one_line_errors(case, bikes_y4m, tmp_path):
    text, msg = BAD[case]
    path = tmp_path / "dets.json"
    if text is not None:
        path.write_text(text)
    r = run_cli("encode", str(bikes_y4m), "--qpmap", f"dets:{path}", "-o", str(tmp_path / "a.hevc"))
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(path) in err and msg in err, err
    assert not (tmp_path / "a.hevc").exists()


@pytest.mark.parametrize(
    "args, msg",
    [
        (("--qpmap", "dets"), "needs a detections file"),
        (("--qpmap", "dets:{d}", "--roi-classes", "bycicle"), "unknown class name 'bycicle'"),
    ],
)
def test_dets_usage_errors_exit_2(args, msg, bikes_y4m, tmp_path):
    d = _jsonl(tmp_path / "d.jsonl", {0: [[*LEFT, 0.9, 1]]})
    r = run_cli("encode", str(bikes_y4m), *(a.format(d=d) for a in args), "-o", str(tmp_path / "a.hevc"))
    err = r.stderr.decode()
    assert r.returncode == 2 and len(err.strip().splitlines()) == 1 and msg in err, err


def test_infinite_coordinates_are_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"image_id": 0, "bbox": [0, 0, 1e999, 1]}]')  # json reads 1e999 as inf
    with pytest.raises(InputError, match="infinite"):
        get_source(f"dets:{path}")
    assert math.isinf(json.loads(path.read_text())[0]["bbox"][2])


def test_detect_numbers_frames_from_the_start_of_the_input(bikes_y4m):
    r = run_cli("detect", str(bikes_y4m), "--skip", "5", "--frames", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["frame"] for ln in r.stdout.decode().splitlines()] == [5, 6]
