"""``vcmtool bench``: encoders x QP-map sources x rate points over clips and images -> RD report."""

from __future__ import annotations

import click

from vcmtool.bench.protocols import PROTOCOLS
from vcmtool.cli import main
from vcmtool.cli.options import (
    SOURCES_HELP,
    MapSourceCommand,
    collect_map_options,
    emit_json,
    input_options,
    missing_payload_option,
    parse_params,
    source_options,
)
from vcmtool.cli.summary import console
from vcmtool.errors import UsageError
from vcmtool.eval.coco import EVAL_MIN_SCORE, PSEUDO_GT_MIN_SCORE


def _int_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@main.command(cls=MapSourceCommand)  # the map sources' options (--roi-*, a plug-in's) as in encode
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="report directory (reused: finished points are not recomputed)",
)
@click.option(
    "-c", "--codec", "codecs", default="kvazaar", show_default=True, help="comma-separated encoders"
)
@click.option(
    "--qpmap",
    "--method",
    "qpmaps",
    default="none,roi",
    show_default=True,
    help="comma-separated methods: QP-map sources ('none', uniform QP, is the anchor and always "
    "runs) or cdre[:fd|:joint|:DIR] (uniform QP + CDRE side stream in SEI, scored by the "
    f"CDRE receiver; reported as cdre-fd / cdre-joint). Sources: {SOURCES_HELP}",
)
@click.option(
    "--qps",
    default="22,27,32,37",
    show_default=True,
    callback=_int_list,
    help="base QPs: the anchor's rate points, and the map sources' unless --qp-offsets",
)
@click.option(
    "--crf",
    is_flag=True,
    help="--qps are CRF values for the encoders with CRF rate control (x264, x265: a map rides "
    "on the encoder's frame QPs as offsets from QP = the CRF); the others code them as QPs",
)
@click.option(
    "--protocol",
    type=click.Choice(sorted(PROTOCOLS)),
    help="a paper's evaluation grid; it sets the options not given on the command line. vcs: "
    + PROTOCOLS["vcs"].summary,
)
@click.option(
    "--qp-offsets",
    callback=_int_list,
    help="JRD QP-offset protocol for map sources: map at --offset-base plus each offset "
    "(write --qp-offsets=-4,0,4,8 when the list starts with a minus)",
)
@click.option(
    "--offset-base",
    type=click.IntRange(0, 63),
    default=32,
    show_default=True,
    help="base QP of the map sources' curve under --qp-offsets",
)
@click.option(
    "--scales",
    default="1",
    show_default=True,
    help="comma-separated spatial scales (0 < F <= 1, or auto) every method runs at; a method at "
    "F != 1 is its own curve METHOD@F (coded at F of the size, upsampled before judging, bpp "
    "against the original size), with BD figures against the full-size anchor",
)
@click.option(
    "--side-stream-budget",
    metavar="PCT%|Nkbps",
    help="cap the side stream of the cdre methods (as encode --side-stream-budget); its bits "
    "stay counted in the rate",
)
@missing_payload_option(
    "--side-stream-missing",
    "the cdre receiver on frames the budget left without a payload (as cdre detect --missing)",
)
@source_options
@input_options
@click.option(
    "--preset",
    default="medium",
    show_default=True,
    metavar="NAME[,CODEC:NAME...]",
    help="encoder preset, for every encoder or (CODEC:NAME) for one",
)
@click.option(
    "--intra-period",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="0: low delay (one I frame); 1: all intra; N: I frame every N",
)
@click.option(
    "--threads", type=click.IntRange(min=0), default=1, show_default=True, help="encoder threads per point"
)
@click.option(
    "--allow-frame-qp",
    is_flag=True,
    help="let frame-QP-only encoders use one QP per frame from the map (else they refuse)",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="[CODEC:]KEY=VALUE",
    help="extra encoder parameter, for every encoder or (CODEC:) for one",
)
@click.option(
    "--judges",
    help="comma-separated detectors that score every point, each against its own pseudo ground "
    "truth; the task model is always the first [default: the task model plus every built-in "
    "judge of another family: yolov3-tiny,nanodet; centernet is a third, opt-in one]. Adding a "
    "judge later re-scores the stored streams, it does not re-encode",
)
@click.option(
    "--gt",
    type=click.Path(dir_okay=False),
    help="COCO-format ground truth (default: pseudo ground truth from each judge)",
)
@click.option(
    "--gt-min-score",
    type=click.FloatRange(EVAL_MIN_SCORE, 1),  # below the scored detections' own threshold the
    # uncompressed frames would no longer score 1.0 against themselves
    default=PSEUDO_GT_MIN_SCORE,
    show_default=True,
    help="pseudo ground truth: each judge's detections on the uncompressed frames from this score "
    "(scoring only: changing it re-scores the stored points)",
)
@click.option(
    "--gt-stable",
    type=click.IntRange(0, 8),
    default=0,
    show_default=True,
    metavar="N",
    help="pseudo ground truth: an object not detected again in each of the N frames before and "
    "after it on the uncompressed input is a don't-care region (0: every object counts)",
)
@click.option(
    "--pool",
    is_flag=True,
    help="also score all inputs as one group 'all' (rates summed, mAP over all frames)",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="bootstrap resamples over frames for confidence intervals (0: none)",
)
@click.option(
    "-j", "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="points run in parallel"
)
@click.option("--engine", type=click.Choice(["process", "ray"]), default="process", show_default=True)
@click.option("--address", help="Ray cluster address (--engine ray)")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON on stdout")
def bench(
    inputs: tuple[str, ...],
    output: str,
    codecs: str,
    qpmaps: str,
    qps: list[int],
    qp_offsets: list[int] | None,
    params: tuple[str, ...],
    as_json: bool,
    judges: str | None,
    scales: str,
    **kw,
) -> None:
    """Benchmark QP-map sources and side streams against a uniform QP: bpp, PSNR, mAP, BD-rate, RD plots.

    \b
    Rate points: the anchor (none) sweeps --qps. Map sources sweep the same base QPs (roi: objects
    at base-4, background at base+6), or with --qp-offsets the JRD protocol: the map predicted at
    --offset-base, plus each offset, clamped. cdre methods code like the anchor, so they sweep
    --qps too; their rate includes the side-stream bits.

    \b
    Judges: every point is scored by the task model (which also steers the maps, so it favours
    them) and by independent detectors (default: NanoDet-g beside YOLOv3-tiny); the report gives
    BD figures per judge.
    """
    from vcmtool.bench.grid import BenchConfig
    from vcmtool.bench.report import to_json, write_report
    from vcmtool.bench.run import run_bench

    protocol_params: tuple[str, ...] = ()
    preset_from_user = True
    if kw["protocol"]:
        ctx = click.get_current_context()
        proto = PROTOCOLS[kw["protocol"]]
        given = {
            n for n in ctx.params if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE
        }
        chosen = {n: v for n, v in proto.options.items() if n not in given}
        codecs, qpmaps, qps = (
            chosen.pop("codecs", codecs),
            chosen.pop("qpmaps", qpmaps),
            chosen.pop("qps", qps),
        )
        kw.update(chosen)
        protocol_params = proto.params
        preset_from_user = "preset" in given
    if not qps:
        raise UsageError("--qps: give at least one QP")
    if any(not 0 <= q <= 63 for q in qps):
        raise UsageError("--qps: QPs must lie in 0..63")
    from vcmtool.bench.methods import split_scale

    map_opts = collect_map_options(kw, [split_scale(m)[0] for m in _names(qpmaps)])
    shared, scoped = _scoped_params(_names(codecs), protocol_params, params)
    preset, codec_presets = _scoped_presets(_names(codecs), kw["preset"], strict=preset_from_user)
    cfg = BenchConfig(
        inputs=list(inputs),
        output=output,
        codecs=_names(codecs),
        qpmaps=_names(qpmaps),
        qps=qps,
        qp_offsets=qp_offsets,
        offset_base=kw["offset_base"],
        frames=kw["frames"],
        skip=kw["skip"],
        size=kw["size"],
        fps=kw["fps"],
        pix_fmt=kw["pix_fmt"],
        preset=preset,
        codec_presets=codec_presets,
        intra_period=kw["intra_period"],
        threads=kw["threads"],
        allow_frame_qp=kw["allow_frame_qp"],
        ctu=int(kw["ctu"]),
        map_interval=kw["map_interval"],
        task_model=kw["task_model"],
        judges=_names(judges) if judges is not None else None,
        map_options=map_opts,
        encoder_params=shared,
        codec_params=scoped,
        crf=kw["crf"],
        gt=kw["gt"],
        gt_min_score=kw["gt_min_score"],
        gt_stable=kw["gt_stable"],
        pool=kw["pool"],
        bootstrap=kw["bootstrap"],
        workers=kw["workers"],
        engine=kw["engine"],
        address=kw["address"],
        scales=_names(scales) or ["1"],
        side_stream_budget=kw["side_stream_budget"],
        side_stream_missing=kw["side_stream_missing"],
    )
    from vcmtool.encoders import EncodeSettings, get_encoder

    for codec in cfg.codecs:  # a typo in --preset or --param must not cost a bench of failed points
        get_encoder(codec).check_settings(
            EncodeSettings(
                cfg.preset_for(codec),
                cfg.intra_period,
                cfg.threads,
                cfg.allow_frame_qp,
                cfg.params_for(codec),
            )
        )
    if cfg.side_stream_budget is not None:
        from vcmtool.sidestreams.budget import SideBudget

        SideBudget.parse(cfg.side_stream_budget)  # a typo must not cost a bench
    res = run_bench(cfg)
    write_report(res)
    if as_json:
        emit_json(to_json(res))
    else:
        _print_summary(res)


def _scoped_params(
    codecs: list[str], protocol: tuple[str, ...], given: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """--param entries -> (for every encoder, {codec: for that one}). ``CODEC:KEY=VALUE`` is
    scoped: a protocol's entries for encoders not in the grid are dropped, the user's are refused."""
    shared: dict[str, str] = {}
    scoped: dict[str, dict[str, str]] = {}
    for from_user, items in ((False, protocol), (True, given)):
        for key, value in parse_params(items).items():
            codec, sep, name = key.rpartition(":")
            if not sep:
                shared[key] = value
                continue
            if codec not in codecs:
                if from_user:
                    raise UsageError(
                        f"--param {key}={value}: {codec} is not in --codec ({', '.join(codecs)})"
                    )
                continue
            scoped.setdefault(codec, {})[name] = value
    return shared, scoped


def _scoped_presets(codecs: list[str], value: str, strict: bool) -> tuple[str, dict[str, str]]:
    """``--preset veryfast,vvenc:faster`` -> ("veryfast", {"vvenc": "faster"}). A scoped name for
    an encoder not in the grid is refused when the user wrote it (``strict``) and dropped when a
    protocol did (it names presets for encoders one may leave out)."""
    shared, scoped = "medium", {}
    for item in _names(value):
        codec, sep, name = item.rpartition(":")
        if not sep:
            shared = item
        elif codec in codecs:
            scoped[codec] = name
        elif strict:
            raise UsageError(f"--preset {item}: {codec} is not in --codec ({', '.join(codecs)})")
    return shared, scoped


def _print_summary(res) -> None:
    from rich.table import Table

    from vcmtool.bench.report import bd_cells, judge_bd_cells, judge_names

    t = Table(title=f"BD figures vs uniform QP ({res.config.output}/report.md)", title_justify="left")
    for col in (
        "group",
        "codec",
        "method",
        "judge",
        "BD-rate mAP@.5",
        "BD-rate mAP",
        "BD-mAP@.5",
        "BD-mAP",
        "BD-mAP@.5 low half",
        "BD-rate person AP@.5",
        "BD-rate PSNR",
        "BD-PSNR dB",
    ):
        t.add_column(col)
    for b in res.bd:
        for j in judge_names(res):
            t.add_row(b["group"], b["codec"], b["method"], j, *judge_bd_cells(b, j), *bd_cells(b)[4:])
    console.print(t)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    for f in res.failures:
        console.print(f"[red]failed:[/] {f['point']}: {f['error']}")
