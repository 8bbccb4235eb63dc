"""Where each kind of output goes, for every command alike.

- stdout carries the command's *result*: JSON with ``--json``, a bitstream with ``-o -``, and for
  the query commands (``doctor``, ``detect``) their table or listing without ``--json``, so
  ``vcmtool doctor > f`` keeps it. ``result`` is that console.
- stderr carries everything said *about* the work: progress bars, summaries of commands whose
  result is files (encode, qpmap, batch, bench, verify, jrd, mfiba, cdre), notes, warnings,
  errors. ``console`` is that console; ``--quiet`` silences it (errors still print).

Off a terminal (CI logs, files, pipes) rich would wrap tables at 80 columns and cut cells
(``BD-ra…``); there the width is unlimited unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

_WIDE = 10_000  # rich draws a table only as wide as its content needs


def _width(stream) -> int | None:
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None  # rich measures the terminal / honours COLUMNS
    return _WIDE


console = Console(stderr=True, width=_width(sys.stderr))
result = Console(width=_width(sys.stdout))


def set_verbosity(quiet: bool) -> None:
    """``--quiet``: no summaries, notes or progress bars on stderr (errors still print)."""
    console.quiet = quiet
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it for every bar, workers included


def print_encode_summary(r: dict) -> None:
    t = Table(title=f"{r['input']} -> {r['output']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("encoder", f"{r['encoder']} ({r['codec'].upper()})")
    t.add_row("frames", f"{r['frames']} x {r['width']}x{r['height']} @ {r['fps']:.3g} fps")
    t.add_row("size", f"{r['bytes']} bytes, {r['bpp']:.5f} bpp, {r['kbps']:.1f} kbps")
    if r.get("psnr_y") is not None:
        t.add_row(
            "PSNR-Y",
            f"{r['psnr_y']:.2f} dB"
            + (f" (U {r['psnr_u']:.2f}, V {r['psnr_v']:.2f})" if r.get("psnr_u") is not None else ""),
        )
    if r.get("ssim_y") is not None:
        t.add_row(
            "SSIM-Y", f"{r['ssim_y']:.4f}" + (f" (all {r['ssim']:.4f})" if r.get("ssim") is not None else "")
        )
    if r.get("vmaf") is not None:
        t.add_row("VMAF", f"{r['vmaf']:.2f} ({r.get('vmaf_model') or 'libvmaf'})")
    q = r["qpmap"]
    t.add_row(
        "QP map",
        f"{q['source']}: QP {q['min']}..{q['max']} mean {q['mean']:.2f} "
        f"(ctu {q['ctu']}, grid {q['grid'][0]}x{q['grid'][1]})",
    )
    if r.get("crf") is not None:  # the map's QPs were offsets on the encoder's own frame QPs
        t.add_row("rate", f"CRF {r['crf']:g}: frame QPs by the encoder, the map as offsets from QP {r['qp']}")
    if r.get("target"):
        tg = r["target"]
        t.add_row(
            "target",
            ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in tg.items()
                if not isinstance(v, (list, dict))
            ),
        )
    if r.get("resample"):
        rs = r["resample"]
        coded = f"coded {rs['coded_width']}x{rs['coded_height']}, " if "coded_width" in rs else ""
        auto = (
            f", auto: median object {rs['auto']['median_box_height']} px at QP {rs['auto']['qp']}"
            if rs.get("auto")
            else ""
        )
        t.add_row("scale", f"{rs['scale']:g} ({coded}original size signalled: {rs['carrier']}{auto})")
    if r.get("side_stream"):
        ss = r["side_stream"]
        line = f"{ss.get('name', '')}: {ss['bits']} bits, {ss['kbps']:.1f} kbps"
        if ss.get("budget"):
            line += f", budget {ss['budget']}: {ss.get('skipped', 0)} of {ss.get('frames', 0)} frames without"
        t.add_row("side stream", line)
    tm = r["timing"]
    if tm.get("map_overlapped"):
        # the map ran beside the encoder: only the encoder's wait for maps is on the wall clock
        t.add_row(
            "time",
            f"total {tm['total_s']:.2f}s: map {tm['map_s']:.2f}s alongside encoder "
            f"{tm['encode_s']:.2f}s (waited {tm['map_wait_s']:.2f}s for maps), "
            f"other {tm['other_s']:.2f}s",
        )
    else:
        t.add_row(
            "time",
            f"total {tm['total_s']:.2f}s: map {tm['map_s']:.2f}s, encoder "
            f"{tm['encode_s']:.2f}s, other {tm['other_s']:.2f}s",
        )
    if tm.get("map_fps") and tm.get("encode_fps"):
        # a map no model made (uniform, a file) costs ~0 s: its "fps" would be a huge number
        maps = f"maps {tm['map_fps']:.1f} fps, " if tm.get("frames_predicted") else ""
        t.add_row(
            "speed",
            f"{maps}encoder {tm['encode_fps']:.1f} fps, end to end {tm['fps']:.1f} fps",
        )
    for n in r.get("notes", []):
        t.add_row("note", n)
    console.print(t)
