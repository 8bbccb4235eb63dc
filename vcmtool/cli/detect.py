"""``vcmtool detect``: run the task model on frames and print detections."""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json, input_options
from vcmtool.cli.summary import result
from vcmtool.io.open import open_video


@main.command()
@click.argument("input")
@input_options
@click.option("--task-model", default="yolov3-tiny", show_default=True)
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON line per frame on stdout")
def detect(
    input: str, task_model: str, min_score: float, as_json: bool, size, fps, pix_fmt, frames, skip
) -> None:
    """Detect objects in INPUT (image, video or raw YUV) with the task model."""
    from vcmtool.tasks import get_task_model

    model = get_task_model(task_model)
    clip = open_video(input, size, fps, pix_fmt, skip, frames)
    for fr in clip.frames():
        det = model.detect(fr.to_bgr()).filter(min_score)
        # Frame numbers count from the start of the input, --skip included, so the JSON lines
        # feed `--qpmap dets:FILE` for any window of the clip.
        n = fr.index + skip
        if as_json:
            emit_json({"frame": n, "model": model.version, "detections": det.to_json()})
        else:
            names = ", ".join(f"{d['class']} {d['score']:.2f}" for d in det.to_json()) or "nothing"
            result.print(f"frame {n}: {names}")
