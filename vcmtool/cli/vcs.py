"""``vcmtool vcs receive|train|export``: the VCS semantic stream's receiver and its training."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.sidestream import codec_of, export_arguments
from vcmtool.cli.summary import console
from vcmtool.errors import InputError, UsageError
from vcmtool.outputs import Output, check_outputs, refuse_existing


@main.group()
def vcs() -> None:
    """VCS semantic stream (`encode --side-stream vcs`): receiver, training and export."""


def _stream_rate(path: Path) -> Fraction:
    """The frame rate the decoder reports (raw Annex B streams: ffmpeg's guess, usually 25)."""
    import av

    from vcmtool.decode import _FORMATS

    try:
        with av.open(str(path), format=_FORMATS.get(path.suffix.lower())) as c:
            r = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
    except (av.error.FFmpegError, IndexError) as e:
        raise InputError(f"{path}: cannot read the video stream ({e})") from None
    return Fraction(r) if r else Fraction(25)


@vcs.command("receive")
@click.argument("bitstream", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, help="enhanced frames as Y4M")
@click.option(
    "--side",
    "side_file",
    type=click.Path(dir_okay=False),
    help="side-stream file (what --side-stream-out wrote; default: the SEI messages in BITSTREAM)",
)
@click.option("--codec", type=click.Choice(["hevc", "vvc", "avc"]), help="default: from the extension")
@click.option("--model", default="default", show_default=True, help="default, or an export directory")
@click.option(
    "--lfn-only", is_flag=True, help="ignore the semantic stream (zeros): plain enhancement baseline"
)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=1000), help="Y4M frame rate")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="torch threads")
@click.option("--json", "as_json", is_flag=True, help="print what was done as JSON on stdout")
@click.option("-y", "--overwrite", is_flag=True, help="replace the output if it exists")
def receive(
    bitstream: str,
    output: str,
    side_file: str | None,
    codec: str | None,
    model: str,
    lfn_only: bool,
    fps: float | None,
    threads: int,
    as_json: bool,
    overwrite: bool,
) -> None:
    """Decode BITSTREAM, fuse the VCS semantic stream into the frames and write them as Y4M, for
    any task model to consume."""
    from vcmtool.atomic import atomic_path
    from vcmtool.decode import decoded_frames
    from vcmtool.io.frame import Frame, VideoInfo
    from vcmtool.io.y4m import write_y4m
    from vcmtool.sidestreams.transport import read_side_file
    from vcmtool.sidestreams.vcs import bits_by_frame, extract_from_bitstream, vcs_model
    from vcmtool.sidestreams.vcs_receiver import VcsReceiver

    path = Path(bitstream)
    if not path.is_file():
        raise InputError(f"{path}: no such bitstream")
    if output in ("-", "pipe:"):
        raise UsageError("-o -: write the Y4M to a file")
    outs = [Output(output, "-o/--output")]
    check_outputs(outs, [bitstream, *([side_file] if side_file else [])])
    if not overwrite:
        refuse_existing(outs)
    m = vcs_model(model)
    rec = VcsReceiver(m.decoder, threads=threads)
    bits = None
    if not lfn_only:
        if side_file:
            payloads = read_side_file(side_file)
        else:
            payloads = extract_from_bitstream(path, codec_of(path, codec))
        bits = bits_by_frame(payloads, rec.probs)
        if not bits:
            raise InputError(f"{side_file or path}: no VCS semantic stream; encode with --side-stream vcs")
    frames = (f.to_bgr() for f in decoded_frames(path))
    first = next(frames, None)
    if first is None:
        raise InputError(f"{path}: no decodable frame")
    h, w = first.shape[:2]
    rate = Fraction(fps).limit_denominator(1 << 20) if fps else _stream_rate(path)

    def all_frames():
        yield first
        yield from frames

    enhanced = rec.enhance(all_frames(), bits)
    with atomic_path(output, parents=False) as tmp, open(tmp, "wb") as f:
        n = write_y4m(
            f, VideoInfo(w - w % 2, h - h % 2, rate), (Frame.from_bgr(b, i) for i, b in enumerate(enhanced))
        )
    summary = {
        "input": str(path),
        "output": output,
        "frames": n,
        "width": w - w % 2,
        "height": h - h % 2,
        "fps": float(rate),
        "semantic_stream": "none (LFN-only)" if lfn_only else (side_file or "sei"),
        "payloads": 0 if bits is None else len(bits),
        "model": rec.version,
    }
    if as_json:
        emit_json(summary)
    else:
        console.print(
            f"{n} frames {summary['width']}x{summary['height']} enhanced ({rec.version}) -> {output}"
        )


@vcs.command("train")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="checkpoint (.pt)")
@click.option(
    "--work",
    default="vcs-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="dev-media coding cache (resumable; the CDRE recipe)",
)
@click.option("--steps", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option(
    "--batch", type=click.IntRange(min=1), default=4, show_default=True, help="clip chunks per step"
)
@click.option("--frames", type=click.IntRange(min=1), default=4, show_default=True, help="frames per chunk")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--alpha", type=float, default=0.1, show_default=True, help="weight of the contrastive term")
@click.option("--lam", type=float, default=0.02, show_default=True, help="weight of the rate (bpp) term")
@click.option(
    "--warmup",
    type=click.FloatRange(0, 0.5),
    default=0.25,
    show_default=True,
    help="share of the steps without rate term and dropout; the rate weight then ramps up as long",
)
@click.option("--channels", type=click.IntRange(min=1, max=32), default=4, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads")
@click.option("--val-every", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--max-minutes", type=click.FloatRange(min=0), default=0, help="stop after this long (0: no limit)"
)
def train(
    output: str,
    work: str,
    steps: int,
    batch: int,
    frames: int,
    lr: float,
    alpha: float,
    lam: float,
    warmup: float,
    channels: int,
    threads: int,
    val_every: int,
    max_minutes: float,
) -> None:
    """Train Sem-Enc and LFN label-free on development media (CPU-sized); keeps the state with
    the best validation PSNR among those trained under the full rate weight."""
    from vcmtool.lab.vcs import data
    from vcmtool.lab.vcs.train import TrainConfig, Trainer
    from vcmtool.sidestreams.vcs_model import VcsConfig

    tr = data.load(data.build(data.TRAIN_SEGMENTS, work, qps=data.QPS))
    va = data.load(data.build(data.VAL_SEGMENTS, work, qps=data.VAL_QPS))
    tc = TrainConfig(
        steps=steps,
        batch=batch,
        frames=frames,
        lr=lr,
        alpha=alpha,
        lam=lam,
        warmup=warmup,
        threads=threads,
        val_every=val_every,
        max_minutes=max_minutes,
    )
    history = Trainer(tr, va, VcsConfig(channels=channels), tc).process(
        output, log=lambda s: click.echo(s, err=True)
    )
    best = max(history, key=lambda h: (h["full_rate"], h["psnr_vcs"]))  # the trainer's rule
    console.print(
        f"kept step {best['step']}: val PSNR codec {best['psnr_codec']:.2f}, "
        f"LFN-only {best['psnr_lfn']:.2f}, VCS {best['psnr_vcs']:.2f} dB "
        f"at {best['bpp']:.4f} bpp of stream -> {output}"
    )


@vcs.command("export")
@export_arguments
@click.option("--prefix", default="vcs", show_default=True, help="file name prefix")
def export(checkpoint: str, output: str, prefix: str) -> None:
    """Export a checkpoint: the sender as ONNX, the receiver (LFN) as a torch file."""
    from vcmtool.lab.vcs.train import export_models

    for k, p in export_models(checkpoint, output, prefix).items():
        console.print(f"{k}: {p} ({p.stat().st_size} bytes)")
