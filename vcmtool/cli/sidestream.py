"""``vcmtool side-stream extract`` and ``vcmtool cdre train|export``."""

from __future__ import annotations

from pathlib import Path

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json, missing_payload_option
from vcmtool.cli.summary import console
from vcmtool.errors import InputError, UsageError

_CODEC_OF_EXT = {
    ".hevc": "hevc",
    ".265": "hevc",
    ".h265": "hevc",
    ".266": "vvc",
    ".vvc": "vvc",
    ".h266": "vvc",
    ".264": "avc",
    ".h264": "avc",
}


def codec_of(path: Path, codec: str | None) -> str:
    if codec:
        return codec
    c = _CODEC_OF_EXT.get(path.suffix.lower())
    if c is None:
        raise UsageError(f"{path}: cannot tell the codec from the extension; pass --codec hevc|vvc|avc")
    return c


@main.group("side-stream")
def side_stream() -> None:
    """Side streams carried in SEI messages (CDRE)."""


@side_stream.command("extract")
@click.argument("bitstream", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="side-stream file (the format --side-stream-out writes)",
)
@click.option("--codec", type=click.Choice(["hevc", "vvc", "avc"]), help="default: from the extension")
@click.option("--json", "as_json", is_flag=True, help="print a summary as JSON on stdout")
def extract(bitstream: str, output: str, codec: str | None, as_json: bool) -> None:
    """Recover the CDRE payloads embedded in BITSTREAM's SEI messages into FILE."""
    from vcmtool.sidestreams.cdre import extract_from_bitstream
    from vcmtool.sidestreams.transport import write_side_file

    path = Path(bitstream)
    if not path.is_file():
        raise InputError(f"{path}: no such bitstream")
    payloads = extract_from_bitstream(path, codec_of(path, codec))
    if not payloads:
        raise InputError(f"{path}: no CDRE side-stream SEI messages; encode with --side-stream cdre")
    write_side_file(output, payloads)
    summary = {
        "bitstream": str(path),
        "output": output,
        "payloads": len(payloads),
        "bits": 8 * sum(len(p) for p in payloads),
    }
    if as_json:
        emit_json(summary)
    else:
        console.print(f"{len(payloads)} CDRE payloads ({summary['bits']} bits) -> {output}")


@main.group()
def cdre() -> None:
    """CDRE (compression distortion representation embedding) training and export."""


@cdre.command("train")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="checkpoint (.pt)")
@click.option(
    "--work",
    default="cdre-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="dev-media coding cache (resumable)",
)
@click.option(
    "--variant",
    type=click.Choice(["fd", "joint"]),
    default="fd",
    show_default=True,
    help="fd: frozen detector (Ours-FD); joint: detector fine-tuned as well",
)
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--lam", type=float, default=0.1, show_default=True, help="weight of the cosine term")
@click.option(
    "--channels",
    type=click.IntRange(min=1, max=64),
    default=6,
    show_default=True,
    help="binary maps per 32x32 block",
)
@click.option("--codec", "encoder", default="kvazaar", show_default=True, help="codes the dev media")
@click.option(
    "--detector-lr", type=float, default=1e-5, show_default=True, help="joint: the detector's learning rate"
)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="torch threads")
@click.option(
    "--val-every",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="validate on held-aside dev frames every N steps and keep the best state "
    "(the latest goes to OUTPUT.last.pt); 0 = no validation, keep the last",
)
@click.option(
    "--select",
    type=click.Choice(["map", "loss"]),
    default="map",
    show_default=True,
    help="which validated state to keep: map = highest validation mAP@.5 vs pseudo GT "
    "(step 0, the identity, wins ties); loss = lowest validation detection loss",
)
@click.option(
    "--loss",
    type=click.Choice(["distill", "yolo"]),
    default="distill",
    show_default=True,
    help="distill: match the receiver's trunk features and raw head outputs (decoded frames + "
    "bits) to the frozen detector's on the originals; yolo: YOLOv3 loss vs pseudo labels (older "
    "models; rewards suppressing detections)",
)
@click.option("--feat-weight", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--head-weight", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option(
    "--det-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="distill: weight of an extra YOLO pseudo-label loss",
)
@click.option(
    "--rate-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="lambda_r * mean(bits): favours sparse, cheaper-to-code bits",
)
def train(
    output: str,
    work: str,
    variant: str,
    steps: int,
    batch: int,
    lr: float,
    lam: float,
    channels: int,
    encoder: str,
    detector_lr: float,
    threads: int,
    val_every: int,
    select: str,
    loss: str,
    feat_weight: float,
    head_weight: float,
    det_weight: float,
    rate_weight: float,
) -> None:
    """Train the CDRE modules on development media (CPU is fine; GPU not needed at this size)."""
    from vcmtool.lab.cdre import data
    from vcmtool.lab.cdre.train import SELECTORS, TrainConfig, Trainer
    from vcmtool.sidestreams.cdre_model import CdreConfig

    items = data.build(data.TRAIN_SEGMENTS, work, codec=encoder)
    val = data.build(data.VAL_SEGMENTS, work, qps=data.VAL_QPS, codec=encoder) if val_every else None
    trainer = Trainer(
        items,
        CdreConfig(channels=channels),
        TrainConfig(
            variant=variant,
            steps=steps,
            batch=batch,
            lr=lr,
            lam=lam,
            detector_lr=detector_lr,
            threads=threads,
            val_every=max(val_every, 1),
            select=select,
            loss=loss,
            feat_weight=feat_weight,
            head_weight=head_weight,
            det_weight=det_weight,
            rate_weight=rate_weight,
        ),
        val_items=val,
    )
    history = trainer.process(output)
    losses = [h["loss"] for h in history if "loss" in h]
    vals = [h for h in history if "val_det" in h]
    best = None
    for h in vals:  # the trainer's own rule, so the message names the state it kept
        if best is None or SELECTORS[select](h, best):
            best = h
    chosen = (
        f", kept step {best['step']} (val mAP@.5 {best['val_map50']:.3f}, yolo loss {best['val_det']:.3f}, "
        f"distill loss {best['val_distill']:.3f}; "
        f"step 0: {vals[0]['val_map50']:.3f})"
        if best
        else ""
    )
    console.print(f"trained {steps} steps, last loss {losses[-1]:.3f}{chosen} -> {output}")


def export_arguments(f):
    """CHECKPOINT and -o DIR of every side stream's ``export`` (cdre, vcs)."""
    f = click.option(
        "-o",
        "--output",
        default="vcmtool/models",
        show_default=True,
        type=click.Path(file_okay=False),
        help="directory for PREFIX_encoder.onnx and PREFIX_decoder.pt (default: the shipped "
        "models, relative to a checkout)",
    )(f)
    return click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))(f)


@cdre.command("export")
@export_arguments
@click.option(
    "--prefix",
    default="cdre",
    show_default=True,
    help="file name prefix (the shipped joint model uses cdre_joint)",
)
def export(checkpoint: str, output: str, prefix: str) -> None:
    """Export a checkpoint: the sender's ONNX encoder and the receiver's modules."""
    from vcmtool.lab.cdre.train import export_models

    paths = export_models(checkpoint, output, prefix)
    for k, p in paths.items():
        console.print(f"{k}: {p} ({p.stat().st_size} bytes)")


@cdre.command("detect")
@click.argument("bitstream", type=click.Path(dir_okay=False))
@click.option(
    "--side-stream",
    "side_file",
    type=click.Path(dir_okay=False),
    help="side-stream file (default: the SEI messages in BITSTREAM)",
)
@click.option("--codec", type=click.Choice(["hevc", "vvc", "avc"]), help="default: from the extension")
@click.option(
    "--model",
    default="fd",
    show_default=True,
    metavar="fd|joint|distill|DIR",
    help="the receiver that matches the sender (encode --side-stream cdre:MODEL)",
)
@click.option("--plain", is_flag=True, help="ignore the side stream (the anchor detector)")
@missing_payload_option(
    "--missing", "frames sent without a payload: embed the last payload received, or detect them plainly"
)
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.25, show_default=True)
def detect(
    bitstream: str,
    side_file: str | None,
    codec: str | None,
    model: str,
    plain: bool,
    missing: str,
    min_score: float,
) -> None:
    """Receiver: YOLOv3-tiny on the decoded frames with the CDRE embedding; JSON lines on stdout.

    A frame's line says "side": true when its own payload arrived; frames skipped under
    --side-stream-budget follow --missing ("held": true when an earlier payload was used)."""
    import json

    from vcmtool.decode import decoded_frames
    from vcmtool.sidestreams.cdre import bits_by_frame, cdre_model, embedded_bits, extract_from_bitstream
    from vcmtool.sidestreams.cdre_receiver import CdreDetector
    from vcmtool.sidestreams.transport import read_side_file

    path = Path(bitstream)
    if not path.is_file():
        raise InputError(f"{path}: no such bitstream")
    bits = {}
    if not plain:
        payloads = (
            read_side_file(side_file) if side_file else extract_from_bitstream(path, codec_of(path, codec))
        )
        bits = bits_by_frame(payloads)
        if not bits:
            raise InputError(f"{side_file or path}: no CDRE side stream; pass --plain to detect without it")
    det = CdreDetector(cdre_model(model).decoder, score_threshold=min_score)
    for f, use in embedded_bits(bits, decoded_frames(path), missing, index=lambda f: f.index):
        own = bits.get(f.index)
        d = det.process([f.to_bgr()], None if use is None else [use])[0]
        line = {"frame": f.index, "side": own is not None, "detections": d.to_json()}
        if own is None and use is not None:
            line["held"] = True
        click.echo(json.dumps(line))
