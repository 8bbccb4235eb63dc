"""Options shared by several commands (input geometry, map source), defined once."""

from __future__ import annotations

import json
from collections.abc import Callable

import click


def input_options(f: Callable) -> Callable:
    opts = [
        click.option("--size", help="WxH, required for raw .yuv input"),
        click.option("--fps", type=float, help="frame rate (raw input; overrides containers)"),
        click.option("--pix-fmt", type=click.Choice(["yuv420p", "yuv420p10le"]),
                     help="raw input sample format"),
        click.option("--frames", type=click.IntRange(min=1), help="encode at most N frames"),
        click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
                     help="skip the first N frames"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def map_options(f: Callable) -> Callable:
    opts = [
        click.option("--qpmap", "qpmap", default="none", show_default=True,
                     help="QP-map source: none | roi | auto (SNN-JRD) | eljrd | file:PATH "
                     "(.qpm/.npy/.csv) | dets:FILE (your detections, roi's --roi-* options: a "
                     "COCO results list [{image_id, category_id, bbox: [x,y,w,h], score}] or JSON "
                     'lines {"frame": i, "boxes": [[x0,y0,x1,y1,score,class], ...]}, also '
                     "`vcmtool detect --json` output; frame numbers are 0-based source frames, "
                     "counted before --skip) | a plugin's name (entry-point group "
                     "vcmtool.qpmap_sources)"),
        click.option("--qp", type=click.IntRange(0, 63), default=32, show_default=True,
                     help="base QP (uniform QP for --qpmap none)"),
        click.option("--ctu", type=click.Choice(["16", "32", "64", "128"]), default="64",
                     show_default=True, help="QP-map block size in pixels"),
        click.option("--map-interval", type=click.IntRange(min=1), default=1, show_default=True,
                     help="predict a map every N frames and reuse it in between"),
        click.option("--task-model", default="yolov3-tiny", show_default=True,
                     help="task model for roi/auto maps: yolov3-tiny or onnx:PATH"),
        click.option("--roi-qp-in", type=click.IntRange(0, 63), help="roi: QP inside objects "
                     "(default: qp-4)"),
        click.option("--roi-qp-out", type=click.IntRange(0, 63), help="roi: background QP "
                     "(default: qp+6)"),
        click.option("--roi-margin", type=click.FloatRange(min=0), default=16.0, show_default=True,
                     help="roi: pixels added around each box"),
        click.option("--roi-classes", help="roi: comma-separated class names to keep"),
        click.option("--roi-min-score", type=click.FloatRange(0, 1), default=0.3,
                     show_default=True, help="roi: minimum detection score"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def collect_map_options(kw: dict) -> dict:
    classes = kw.pop("roi_classes", None)
    out = {k: kw.pop(k) for k in ("roi_qp_in", "roi_qp_out", "roi_margin", "roi_min_score")}
    out["roi_classes"] = [c.strip() for c in classes.split(",")] if classes else None
    return out


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise click.BadParameter(f"{it!r} is not KEY=VALUE", param_hint="--param")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, sort_keys=False))
