"""VCS receiver: the latent fusion network (LFN) turns decoded frames plus the semantic stream
into enhanced RGB frames that any task model consumes (task-decoupled), written as Y4M.

Runtime only: loading an exported ``vcs_decoder.pt`` and running it; training lives in
:mod:`vcmtool.lab.vcs.train`, which this module never imports.

The LFN's temporal convolutions are causal; frames are processed in chunks of ``chunk`` with the
``context`` frames before each chunk run again in front of it (and their outputs dropped), so
memory stays bounded on long clips and every frame sees at least ``context`` frames of history.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from vcmtool.errors import InputError, ModelError
from vcmtool.sidestreams.vcs import DECODER_PT, pad_frame
from vcmtool.sidestreams.vcs_model import LatentFusion, VcsConfig


class VcsReceiver:
    """``enhance(decoded_bgrs, bits)`` -> enhanced uint8 BGR frames; ``bits=None`` is LFN-only
    (the semantic stream replaced by zeros)."""

    def __init__(self, decoder: str | Path = DECODER_PT, threads: int = 2) -> None:
        torch.set_num_threads(threads)
        try:
            blob = torch.load(decoder, map_location="cpu", weights_only=False)
            self.config = VcsConfig.from_dict(blob["config"])
            self.lfn = LatentFusion(self.config)
            self.lfn.load_state_dict(blob["receiver"])
            self.probs: list[int] = [int(p) for p in blob["probs"]]
        except (OSError, KeyError, RuntimeError, TypeError, ValueError) as e:
            raise ModelError(
                f"{decoder}: cannot load the VCS decoder ({e}); run 'vcmtool vcs export'"
            ) from None
        self.lfn.eval()
        self.version = str(blob.get("version", "unknown"))

    def _run(self, dec: np.ndarray, bits: np.ndarray | None) -> np.ndarray:
        with torch.inference_mode():
            y = self.lfn(torch.from_numpy(dec), None if bits is None else torch.from_numpy(bits))
            return y.clamp(0, 1).numpy()

    def enhance(
        self,
        decoded_bgrs: Iterable[np.ndarray],
        bits: Mapping[int, np.ndarray] | None,
        chunk: int = 8,
        context: int = 8,
    ) -> Iterator[np.ndarray]:
        """Enhanced uint8 BGR frames, one per decoded frame, in display order. A frame without
        bits (skipped by the sender's budget) gets an all-zero semantic map, as LFN-only does."""
        hist: list[np.ndarray] = []
        hist_bits: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        pending_bits: list[np.ndarray] = []
        shape = None

        def flush() -> Iterator[np.ndarray]:
            nonlocal hist, hist_bits, pending, pending_bits
            dec = np.stack(hist + pending)
            b = None if bits is None else np.stack(hist_bits + pending_bits).astype(np.float32)
            out = self._run(dec, b)[len(hist) :]
            h, w = shape
            for y in out:
                rgb = np.rint(y[:, :h, :w].transpose(1, 2, 0) * 255.0).astype(np.uint8)
                yield np.ascontiguousarray(rgb[..., ::-1])
            hist, hist_bits = (hist + pending)[-context:], (hist_bits + pending_bits)[-context:]
            pending, pending_bits = [], []

        for index, bgr in enumerate(decoded_bgrs):
            if shape is None:
                shape = bgr.shape[:2]
            pending.append(pad_frame(bgr))
            if bits is not None:
                want = (self.config.channels, pending[-1].shape[1] // 16, pending[-1].shape[2] // 16)
                b = bits.get(index)
                if b is None:  # sent without a payload (--side-stream-budget): the LFN-only input
                    b = np.zeros(want, np.uint8)
                if b.shape != want:
                    raise InputError(
                        f"VCS payload for frame {index} has shape {b.shape}, the frame needs {want}"
                    )
                pending_bits.append(b)
            if len(pending) == chunk:
                yield from flush()
        if pending:
            yield from flush()


def enhanced_psnr(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Mean PSNR (dB, all channels) between two lists of uint8 frames."""
    vals = []
    for x, y in zip(a, b, strict=True):
        mse = F.mse_loss(torch.from_numpy(x).float(), torch.from_numpy(y).float()).item()
        vals.append(10 * np.log10(255.0**2 / max(mse, 1e-9)))
    return float(np.mean(vals))
