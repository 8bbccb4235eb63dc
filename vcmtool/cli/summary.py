"""Human-readable output on stderr (rich), kept apart from the JSON on stdout."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def print_encode_summary(r: dict) -> None:
    t = Table(title=f"{r['input']} -> {r['output']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("encoder", f"{r['encoder']} ({r['codec'].upper()})")
    t.add_row("frames", f"{r['frames']} x {r['width']}x{r['height']} @ {r['fps']:.3g} fps")
    t.add_row("size", f"{r['bytes']} bytes, {r['bpp']:.5f} bpp, {r['kbps']:.1f} kbps")
    if r.get("psnr_y") is not None:
        t.add_row("PSNR-Y", f"{r['psnr_y']:.2f} dB")
    q = r["qpmap"]
    t.add_row("QP map", f"{q['source']}: QP {q['min']}..{q['max']} mean {q['mean']:.2f} "
              f"(ctu {q['ctu']}, grid {q['grid'][0]}x{q['grid'][1]})")
    if r.get("target"):
        tg = r["target"]
        t.add_row("target", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in tg.items() if not isinstance(v, (list, dict))))
    if r.get("side_stream"):
        ss = r["side_stream"]
        t.add_row("side stream", f"{ss.get('name', '')}: {ss['bits']} bits, {ss['kbps']:.1f} kbps")
    tm = r["timing"]
    t.add_row("time", f"map {tm['map_s']:.2f}s, encoder {tm['encode_s']:.2f}s, "
              f"other {tm['other_s']:.2f}s")
    for n in r.get("notes", []):
        t.add_row("note", n)
    console.print(t)
