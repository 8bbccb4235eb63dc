"""Bench outputs: CSV + JSON results, RD plots (PNG), a Markdown report, and provenance.

Everything is written atomically. ``provenance.json`` is written last: the full config, the
versions of every tool and model, the git commit, and the md5 of every other output (bitstreams
included), so a figure in a README can be traced to the bytes behind it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import shlex
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from vcmtool.atomic import atomic_path, write_text_atomic
from vcmtool.bench.grid import ANCHOR, PointSpec
from vcmtool.bench.run import JUDGE_BD_KEYS, BenchResult
from vcmtool.eval.coco import EVAL_MIN_SCORE
from vcmtool.provenance import base_versions, git_commit, md5_file

POINT_COLS = [
    "input",
    "codec",
    "method",
    "scale",
    "qp",
    "qp_offset",
    "frames",
    "bits",
    "side_bits",
    "bpp",
    "psnr_y",
    "map50",
    "map",
    "ap50_person",
    "map_s",
    "encode_s",
    "other_s",
    "eval_s",
    "cached",
    "stream",
]
CURVE_COLS = [
    "group",
    "codec",
    "method",
    "scale",
    "rate",
    "qp",
    "qp_offset",
    "frames",
    "bits",
    "side_bits",
    "bpp",
    "psnr_y",
    "map50",
    "map50_ci",
    "map",
    "map_ci",
    "ap50_person",
    "map_s",
    "encode_s",
    "other_s",
    "eval_s",
]
BD_COLS = [
    "group",
    "codec",
    "method",
    "anchor",
    "bd_rate_map50",
    "bd_rate_map50_ci",
    "bd_rate_map",
    "bd_rate_map_ci",
    "bd_map50",
    "bd_map50_ci",
    "bd_map",
    "bd_map_ci",
    "bd_map50_low",
    "bd_map50_low_ci",
    "bd_rate_ap50_person",
    "bd_rate_ap50_person_ci",
    "bd_rate_psnr",
    "bd_psnr",
    "bd_rate_map50_overlap",
    "bd_map50_overlap",
    "warnings",
]


def _clean(v):
    """JSON-safe: NaN becomes null (strict JSON readers reject NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def _placeholders() -> list[tuple[str, str]]:
    """(machine prefix, placeholder) for the Python installation, the temp folder and the home
    folder, in the order :func:`portable` applies them."""
    import sysconfig
    import tempfile

    return [
        (sysconfig.get_paths()["purelib"] + "/", "<site-packages>/"),
        (str(Path(tempfile.gettempdir()).resolve()) + "/", "<tmp>/"),
        (str(Path.home()) + "/", "~/"),
    ]


def portable(v, out: Path):
    """``v`` with machine paths made portable, for committed reports: paths inside the bench
    folder become relative to it, the current folder's relative, and the Python installation, the
    temp folder and the home folder placeholders (``<site-packages>``, ``<tmp>``, ``~``)."""
    prefixes = [
        (str(out.resolve()) + "/", ""),
        (str(Path.cwd().resolve()) + "/", ""),
        *_placeholders(),
    ]

    def fix(x):
        if isinstance(x, str):
            for a, b in prefixes:
                x = x.replace(a, b)
            return x
        if isinstance(x, dict):
            return {fix(k): fix(y) for k, y in x.items()}
        if isinstance(x, list | tuple):
            return [fix(y) for y in x]
        return x

    return fix(v)


def local_path(text: str) -> str:
    """A path that :func:`portable` wrote, on this machine: its leading placeholder
    (``<site-packages>/``, ``<tmp>/``, ``~/``) replaced by this machine's folder. Relative paths
    stay relative (to the bench folder or the folder the bench ran in)."""
    for prefix, mark in _placeholders():
        if text.startswith(mark):
            return prefix + text[len(mark) :]
    return text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name).strip("_") or "group"


JUDGE_COLS = ("map50", "map", "ap50_person")
JUDGE_BD_COLS = JUDGE_BD_KEYS  # the judge-dependent BD figures, one column each per judge


def judge_names(res: BenchResult) -> list[str]:
    """The judges, the task model first (its figures are also the rows' top-level ones)."""
    return list(res.judges) or [res.config.task_model]


def to_json(res: BenchResult) -> dict:
    return _clean(
        {
            "config": res.config.to_json(),
            "reference": res.reference,
            "bd": res.bd,
            "curves": res.curves,
            "points": [_point_row(p) for p in res.points],
            "failures": res.failures,
            "warnings": res.warnings,
            "protocol": {
                "pseudo_gt_min_score": res.config.gt_min_score,
                "pseudo_gt_stable": res.config.gt_stable,
                "eval_min_score": EVAL_MIN_SCORE,
                "ground_truth": res.config.gt
                or "pseudo (each judge on the uncompressed frames, scored against its own)",
                "judges": res.judges or {res.config.task_model: ""},
                "primary_judge": res.config.task_model,
                "bd_method": "pchip (bjontegaard package)",
                "map_unit": "percent",
                "bd_map_unit": "mAP points",
            },
        }
    )


def _point_row(p: dict) -> dict:
    s = p["spec"]
    return {
        "input": s["input"],
        "codec": s["codec"],
        "method": s["qpmap"],
        "scale": p.get("scale", 1.0),
        "coded_width": p.get("coded_width", p["width"]),
        "coded_height": p.get("coded_height", p["height"]),
        "qp": s["qp"],
        "qp_offset": s["qp_offset"],
        "frames": p["frames"],
        "bits": p["bits"],
        "side_bits": p["side_bits"],
        "bpp": p["bpp"],
        "psnr_y": p["psnr_y"],
        "map50": p["map50"],
        "map": p["map"],
        "ap50_person": p.get("ap50_person"),
        "judges": p.get("judges", {}),
        **{k: p["timing"][k] for k in ("map_s", "encode_s", "other_s")},
        "eval_s": p["eval_s"],
        "cached": p["cached"],
        "stream": p["stream"],
        "stream_md5": next(iter(p["md5"].values()), None),
        "notes": p["notes"],
        "task_model": p["task_model"],
        "encoder_version": p["versions"].get("ffmpeg/encoder"),
        "rate": PointSpec(**s).rate_label,  # QP32, QP32+4 or CRF35
    }


def _csv(
    rows: list[dict], cols: list[str], judged: tuple[str, ...] = (), judges: list[str] | None = None
) -> str:
    """CSV of ``cols``, plus ``KEY@JUDGE`` columns for each judge and each key of ``judged``."""
    extra = [(f"{k}@{j}", j, k) for j in (judges or []) for k in judged]
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=cols + [e[0] for e in extra], extrasaction="ignore", lineterminator="\n"
    )
    w.writeheader()
    for r in rows:
        cells = {k: _cell(r.get(k)) for k in cols}
        for name, j, k in extra:
            cells[name] = _cell((r.get("judges", {}).get(j) or {}).get(k))
        w.writerow(cells)
    return buf.getvalue()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if isinstance(v, list | tuple):
        return ";".join(_cell(x) for x in v)
    return str(v)


def fmt_figure(v, ci=None, unit: str = "", digits: int = 1) -> str:
    """A figure with its CI as report text (``+12.3% [-4.5, +20.1]``); n/a when missing or not finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    s = f"{v:+.{digits}f}{unit}"
    if ci:
        s += f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"
    return s


def bd_cells(b: dict) -> list[str]:
    """BD-rate mAP@.5, BD-rate mAP, BD-mAP@.5, BD-mAP, BD-rate PSNR, BD-PSNR, with CIs, as text."""
    return [
        fmt_figure(b["bd_rate_map50"], b.get("bd_rate_map50_ci"), "%"),
        fmt_figure(b["bd_rate_map"], b.get("bd_rate_map_ci"), "%"),
        fmt_figure(b["bd_map50"], b.get("bd_map50_ci")),
        fmt_figure(b["bd_map"], b.get("bd_map_ci")),
        fmt_figure(b["bd_rate_psnr"], None, "%"),
        fmt_figure(b["bd_psnr"], None, "", 2),
    ]


def judge_bd_cells(b: dict, judge: str) -> list[str]:
    """One judge's BD-rate mAP@.5, BD-rate mAP, BD-mAP@.5, BD-mAP, BD-mAP@.5 over the lower half
    of the rates and BD-rate person AP@.5."""
    jb = b.get("judges", {}).get(judge) if "judges" in b else b
    if jb is None:  # a method with its own receiver is judged by it only; else: no usable points
        from vcmtool.bench.methods import resolve

        own = resolve(b["method"]).receiver is not None if "method" in b else True
        return ["n/a (receiver)" if own else "n/a"] * 6
    return [
        fmt_figure(jb.get("bd_rate_map50"), jb.get("bd_rate_map50_ci"), "%"),
        fmt_figure(jb.get("bd_rate_map"), jb.get("bd_rate_map_ci"), "%"),
        fmt_figure(jb.get("bd_map50"), jb.get("bd_map50_ci")),
        fmt_figure(jb.get("bd_map"), jb.get("bd_map_ci")),
        fmt_figure(jb.get("bd_map50_low"), jb.get("bd_map50_low_ci")),
        fmt_figure(jb.get("bd_rate_ap50_person"), jb.get("bd_rate_ap50_person_ci"), "%"),
    ]


def plot_group(path: Path, curves: list[dict], group: str, judges: list[str] | None = None) -> None:
    """RD curves of one group: a row of mAP@0.5 / mAP@[.5:.95] panels per judge (the task
    model's row also shows PSNR)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judges = judges or [""]
    rows = len(judges)
    fig, grid = plt.subplots(rows, 3, figsize=(15, 4.4 * rows), constrained_layout=True, squeeze=False)
    cells = []
    for r, judge in enumerate(judges):
        by = f" - judge {judge}" if len(judges) > 1 else ""
        cells += [
            (grid[r][0], judge, "map50", "map50_ci", f"mAP@0.5 (%){by}"),
            (grid[r][1], judge, "map", "map_ci", f"mAP@[.5:.95] (%){by}"),
        ]
        if r == 0:
            cells.append((grid[r][2], judge, "psnr_y", None, "luma PSNR (dB)"))
        else:
            grid[r][2].axis("off")
    series: dict[tuple[str, str], list[dict]] = {}
    for c in curves:
        series.setdefault((c["codec"], c["method"]), []).append(c)
    styles = ["o", "s", "^", "D", "v", "P", "X"]

    def value(p: dict, judge: str, key: str):
        if key == "psnr_y" or judge == judges[0]:  # the task model's figures are the top-level ones
            return p.get(key)
        return (p.get("judges", {}).get(judge) or {}).get(key)

    for ax, judge, key, ci_key, label in cells:
        for i, ((codec, method), pts) in enumerate(sorted(series.items())):
            pts = sorted((p for p in pts if value(p, judge, key) is not None), key=lambda p: p["bpp"])
            if not pts:
                continue
            x = [p["bpp"] for p in pts]
            y = [value(p, judge, key) for p in pts]
            ls = "--" if method == ANCHOR else "-"
            line = ax.plot(x, y, ls, marker=styles[i % len(styles)], label=f"{codec} {method}")[0]
            if ci_key and all(value(p, judge, ci_key) for p in pts):
                # A percentile bootstrap CI of mAP (not a mean) can leave out the full-sample
                # figure, e.g. near 100 where most resamples score higher: no bar on that side.
                lo = [max(0.0, value(p, judge, key) - value(p, judge, ci_key)[0]) for p in pts]
                hi = [max(0.0, value(p, judge, ci_key)[1] - value(p, judge, key)) for p in pts]
                ax.errorbar(x, y, yerr=[lo, hi], fmt="none", ecolor=line.get_color(), alpha=0.4, capsize=2)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    grid[0][0].legend(fontsize=8)
    bars = " (bars: 95% bootstrap CI over frames)" if any(c.get("map50_ci") for c in curves) else ""
    fig.suptitle(f"{group}: rate vs task accuracy and PSNR{bars}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def grid_line(cfg) -> str:
    def join(v) -> str:
        return ", ".join(map(str, v))

    rates = f"base QPs {join(cfg.qps)}"
    if getattr(cfg, "crf", False):
        rates = (
            f"CRF {join(cfg.qps)} for encoders with CRF rate control (x264, x265; a map's offsets "
            "from QP = the CRF ride on the encoder's frame QPs), the same numbers as QPs for the others"
        )
    if cfg.qp_offsets:
        rates += f" (anchor); map sources at QP {cfg.offset_base} with offsets {join(cfg.qp_offsets)}"
    scoped = getattr(cfg, "codec_presets", None) or {}
    presets = "".join(f" ({c}: {p})" for c, p in scoped.items())
    coding = "low delay (one I frame)" if cfg.intra_period == 0 else f"intra period {cfg.intra_period}"
    scales = getattr(cfg, "scales", None) or ["1"]
    scaled = (
        f" Spatial scales {join(scales)}: METHOD@F is coded at F of the size (multiples of 8, "
        "the original size in an SEI) and upsampled back before every judge; its bpp is against "
        "the original size."
        if scales != ["1"]
        else ""
    )
    return (
        f"Grid: encoders {join(cfg.codecs)}; QP-map sources {join(cfg.qpmaps)}; {rates}; preset "
        f"{cfg.preset}{presets}; {coding} for clips, intra for images; {cfg.frames or 'all'} frames per "
        f"clip; ctu {cfg.ctu}.{scaled}"
    )


def markdown(res: BenchResult, plots: dict[str, str], command: str) -> str:
    cfg = res.config
    judges = judge_names(res)
    gt = (
        f"real ground truth `{cfg.gt}`"
        if cfg.gt
        else (
            f"pseudo ground truth (each judge's own detections on the uncompressed frames, score >= "
            f"{cfg.gt_min_score}"
            + (
                f"; objects not detected again within {cfg.gt_stable} frame(s) before and after are "
                "don't-care regions"
                if cfg.gt_stable
                else ""
            )
            + f"); scored detections use score >= {EVAL_MIN_SCORE}"
        )
    )
    judged_by = ", ".join(f"`{j}` ({res.judges.get(j) or 'task model'})" for j in judges)
    lines = [
        "# vcmtool bench report",
        "",
        f"Command: `{command}`",
        "",
        f"Accuracy: mAP (pycocotools, percent) vs {gt}. Judges: {judged_by}; the first is the "
        "task model the maps are computed with, so its figures favour its own maps; the others "
        "are independent. Methods with their own receiver (cdre) are judged by it only. Rate: "
        "bits per pixel of everything transmitted. BD figures: `bjontegaard` pchip vs the same "
        "encoder with a uniform QP (`none`); BD-rate negative = fewer bits at equal accuracy, "
        "BD-mAP positive = more mAP points at equal bits; its lower-half column averages over the "
        "cheaper half of the log-rate interval both curves cover only. Brackets: 95% bootstrap CI "
        f"over frames ({cfg.bootstrap} resamples, paired across methods).",
        "",
        grid_line(cfg),
        "",
        "## BD figures",
        "",
        "| group | codec | method | judge | BD-rate mAP@.5 | BD-rate mAP | BD-mAP@.5 (pts) "
        "| BD-mAP (pts) | BD-mAP@.5, lower half of rates (pts) | BD-rate person AP@.5 "
        "| BD-rate PSNR | BD-PSNR (dB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in res.bd:
        psnr = bd_cells(b)[4:]
        for j in judges:
            cells = [b["group"], b["codec"], b["method"], j, *judge_bd_cells(b, j), *psnr]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Uncompressed reference",
        "",
        "| group | frames | judge | mAP@.5 | mAP@[.5:.95] |",
        "|---|---|---|---|---|",
    ]
    for r in res.reference:
        for j in judges:
            jr = r.get("judges", {}).get(j) or r
            lines.append(f"| {r['group']} | {r['frames']} | {j} | {jr['map50']:.1f} | {jr['map']:.1f} |")
    head = " | ".join(f"mAP@.5 [CI] ({j}) | mAP [CI] ({j}) | person AP@.5 ({j})" for j in judges)
    lines += [
        "",
        "## Rate points",
        "",
        f"| group | codec | method | scale | rate | bpp | PSNR-Y | {head} | map s | encoder s | other s |",
        "|---|---|---|---|---|---|---|" + "---|---|---|" * len(judges) + "---|---|---|",
    ]
    for c in res.curves:
        scores = []
        for j in judges:
            jc = c.get("judges", {}).get(j) if "judges" in c else c
            if jc is None:
                scores += ["n/a"] * 3
                continue
            ci50 = f" [{jc['map50_ci'][0]:.1f}, {jc['map50_ci'][1]:.1f}]" if jc.get("map50_ci") else ""
            ci = f" [{jc['map_ci'][0]:.1f}, {jc['map_ci'][1]:.1f}]" if jc.get("map_ci") else ""
            scores += [f"{jc['map50']:.1f}{ci50}", f"{jc['map']:.1f}{ci}", _num(jc.get("ap50_person"))]
        lines.append(
            f"| {c['group']} | {c['codec']} | {c['method']} | {_scale(c.get('scale', 1.0))} | {c['rate']} | "
            f"{c['bpp']:.5f} | "
            f"{c['psnr_y']:.2f} | {' | '.join(scores)} | {c['map_s']:.2f} | "
            f"{c['encode_s']:.2f} | {c['other_s']:.2f} |"
        )
    if plots:
        lines += ["", "## RD curves", ""] + [f"![{g}]({p})" for g, p in plots.items()]
    if res.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in res.warnings]
    notes = sorted({n for p in res.points for n in p.get("notes", [])})
    if notes:
        lines += ["", "## Encoder notes", ""] + [f"- {n}" for n in notes]
    if res.failures:
        lines += ["", "## Failed points", ""] + [f"- {f['point']}: {f['error']}" for f in res.failures]
    return "\n".join(lines) + "\n"


def _scale(v) -> str:
    return f"{v:g}" if isinstance(v, float | int) else str(v)


def _num(v, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def versions(res: BenchResult) -> dict:
    v = dict(base_versions())
    for pkg in (
        "pycocotools",
        "bjontegaard",
        "matplotlib",
        "av",
        "opencv-python-headless",
        "imageio-ffmpeg",
        "scipy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            v[pkg] = metadata.version(pkg)
    for p in res.points:
        v[f"encoder/{p['spec']['codec']}"] = (
            f"{p['versions'].get('ffmpeg/encoder', '')} ({p['versions'].get('encoder_detail', '')})".strip()
        )
        v["task_model"] = p["task_model"]
    for s in res.sources.values():
        v["task_model"] = s["task_model"]
    for j, version in res.judges.items():
        v[f"judge/{j}"] = version
    return v


def _git_dirty() -> bool | None:
    """Whether the package's code differs from the commit (edited or untracked files under vcmtool/)."""
    import subprocess

    import vcmtool

    try:
        r = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            cwd=Path(vcmtool.__file__).parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(r.stdout.strip()) if r.returncode == 0 else None


def write_report(res: BenchResult, command: str | None = None) -> dict[str, str]:
    """Write every output under the bench directory; returns {path: md5} of what was written."""
    out = Path(res.config.output)
    command = portable(command or " ".join(shlex.quote(a) for a in ["vcmtool", *sys.argv[1:]]), out)
    data = portable(to_json(res), out)
    written: list[Path] = []

    def text(name: str, body: str) -> None:
        write_text_atomic(out / name, body)
        written.append(out / name)

    text("results.json", json.dumps(data, indent=1))
    judges = judge_names(res)
    text("points.csv", _csv(data["points"], POINT_COLS, JUDGE_COLS, judges))
    text("curves.csv", _csv(data["curves"], CURVE_COLS, JUDGE_COLS, judges))
    text("bd.csv", _csv(data["bd"], BD_COLS, JUDGE_BD_COLS, judges))
    plots: dict[str, str] = {}
    for group in dict.fromkeys(c["group"] for c in res.curves):
        rel = f"rd_{_slug(group)}.png"
        plot_group(out / rel, [c for c in res.curves if c["group"] == group], group, judges)
        written.append(out / rel)
        plots[group] = rel
    text("report.md", markdown(res, plots, command))
    md5 = {str(p.relative_to(out)): md5_file(p) for p in written}
    for p in res.points:
        sp = Path(p["stream"])
        if sp.exists():
            md5[str(sp.relative_to(out)) if sp.is_relative_to(out) else str(sp)] = md5_file(sp)
    prov = {
        "command": command,
        "config": asdict(res.config),
        "git_commit": git_commit(),
        "git_dirty": _git_dirty(),
        "versions": versions(res),
        "md5": md5,
    }
    write_text_atomic(out / "provenance.json", json.dumps(_clean(portable(prov, out)), indent=1))
    return md5
