"""Shared by the JRD benchmark scripts: one resumable `vcmtool jrd train` run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def train_run(
    dataset: str | Path, out: Path, kind: str, epochs: int, args: list[str], quiet: bool = False
) -> None:
    """Train into ``out`` unless it already holds ``epochs`` epochs (an interrupted run resumes).
    ``quiet`` also drops the per-epoch log (stderr), for runs going on side by side."""
    last = out / "last.pt"
    if last.is_file():
        import torch

        if torch.load(last, map_location="cpu", weights_only=False)["epoch"] >= epochs:
            return
    cmd = [
        sys.executable,
        "-m",
        "vcmtool",
        "jrd",
        "train",
        str(dataset),
        "-o",
        str(out),
        "--model",
        kind,
        "--epochs",
        str(epochs),
        "--resume",
        *args,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None)
