"""``run_bench``: run the grid (resumable, parallel), score it, compute BD figures.

Work happens in two resumable batches through :func:`vcmtool.runner.run_items`: the task model
on each uncompressed input, then every rate point. Scoring and BD figures are cheap and are
recomputed from the stored point results on every run, so a resumed or extended bench always
reports over everything finished so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcmtool.bench import bdrate
from vcmtool.bench.evaluate import GroundTruth, Key, Matched, bootstrap_samples, percentile_ci
from vcmtool.bench.grid import (
    ANCHOR,
    BenchConfig,
    PointSpec,
    groups,
    point_item,
    point_specs,
    rate_points,
    source_item,
)
from vcmtool.bench.methods import resolve
from vcmtool.bench.points import encode_point, source_point
from vcmtool.encoders import get_encoder
from vcmtool.errors import InputError, UsageError
from vcmtool.runner import run_items

MIN_RATE_POINTS = 4  # DESIGN.md: at least four rate points per curve
MIN_BOOTSTRAP_FRAMES = 8  # fewer frames than this give no meaningful interval


@dataclass
class BenchResult:
    config: BenchConfig
    sources: dict[str, dict]
    points: list[dict]  # per input and rate point (detections stripped)
    curves: list[dict]  # per group, codec, method and rate point
    bd: list[dict]
    reference: list[dict]  # mAP of the uncompressed frames per group
    failures: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate(cfg: BenchConfig) -> list[str]:
    notes: list[str] = []
    if not cfg.inputs:
        raise UsageError("bench needs at least one input")
    for c in cfg.codecs:
        get_encoder(c)  # unknown names fail here, with the list of known ones
    cfg.qpmaps = [resolve(m).name for m in cfg.qpmaps]  # unknown names fail here; canonical names
    for m in cfg.qpmaps:
        allowed = resolve(m).task_models
        if allowed and cfg.task_model not in allowed:
            raise UsageError(f"method {m} scores with its own receiver detector; compare it under "
                             f"--task-model {' or '.join(allowed)}, not {cfg.task_model}")
    if len(set(cfg.qpmaps)) != len(cfg.qpmaps):
        raise UsageError(f"--qpmap names a method twice: {', '.join(cfg.qpmaps)}")
    offsets = cfg.qp_offsets or []
    if len(set(cfg.qps)) != len(cfg.qps) or len(set(offsets)) != len(offsets):
        raise UsageError("--qps / --qp-offsets contain a value twice")
    if ANCHOR not in cfg.qpmaps:
        cfg.qpmaps = [ANCHOR, *cfg.qpmaps]
        notes.append("added the uniform-QP anchor 'none': BD figures are measured against it")
    for m in cfg.qpmaps:
        n = len(rate_points(cfg, m))
        if n < MIN_RATE_POINTS:
            notes.append(f"{m}: {n} rate points; BD figures want at least {MIN_RATE_POINTS}")
    if cfg.gt and not Path(cfg.gt).is_file():
        raise UsageError(f"--gt {cfg.gt}: no such file")
    return notes


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "detections"}


def run_bench(cfg: BenchConfig) -> BenchResult:
    notes = validate(cfg)
    out = Path(cfg.output)
    state = out / "state"
    stream_dir = out / "streams"
    stream_dir.mkdir(parents=True, exist_ok=True)

    sources: dict[str, dict] = {}
    src_items = [source_item(cfg, inp) for inp in cfg.inputs]
    for o in run_items(source_point, src_items, state / "sources", cfg.workers, cfg.engine, cfg.address,
                       desc="reference detections"):
        if not o.ok:
            raise InputError(f"{o.item.payload['input']}: {o.error}")
        sources[o.item.payload["input"]] = o.result

    results: dict[PointSpec, dict] = {}
    failures: list[dict] = []
    items = {}
    for s in point_specs(cfg):
        it = point_item(cfg, s, str(stream_dir))
        items[it.key] = s
    for o in run_items(encode_point, [point_item(cfg, s, str(stream_dir)) for s in items.values()],
                       state / "points", cfg.workers, cfg.engine, cfg.address, desc="rate points"):
        spec = items[o.item.key]
        if o.ok:
            results[spec] = {**o.result, "key": o.item.key, "cached": o.cached}
        else:
            failures.append({"point": f"{spec.input} {spec.codec} {spec.qpmap} {spec.rate_label}",
                             "error": o.error})
    if failures:
        notes.append(f"{len(failures)} rate point(s) failed; see failures (rerun to retry them)")
    return score(cfg, sources, results, failures, notes)


def score(cfg: BenchConfig, sources: dict[str, dict], results: dict[PointSpec, dict],
          failures: list[dict], notes: list[str]) -> BenchResult:
    class_names = next(iter(sources.values()))["class_names"]
    grouping = groups(cfg.inputs, {k: v["frames"] for k, v in sources.items()}, cfg.pool)
    points, curves, bd_rows, reference = [], [], [], []

    for inp in cfg.inputs:
        gt = _ground_truth(cfg, {inp: sources[inp]}, class_names)
        for spec, r in results.items():
            if spec.input == inp:
                s = _matched(gt, {spec: r}).scores()
                points.append({**_strip(r), "map50": 100 * s.map50, "map": 100 * s.map})

    for gname, members in grouping.items():
        gt = _ground_truth(cfg, {m: sources[m] for m in members}, class_names)
        n = len(gt.keys)
        samples = bootstrap_samples(n, cfg.bootstrap if n >= MIN_BOOTSTRAP_FRAMES else 0)
        if cfg.bootstrap and n < MIN_BOOTSTRAP_FRAMES:
            notes.append(f"{gname}: {n} frames, too few for bootstrap intervals (needs "
                         f"{MIN_BOOTSTRAP_FRAMES}); its figures carry no CI")
        ref = _matched(gt, None, sources={m: sources[m] for m in members})
        ref_scores = {k: v for k, v in _map_pct(ref, samples).items() if not k.startswith("_")}
        reference.append({"group": gname, "frames": n, **ref_scores})
        boot: dict[tuple[str, str], dict[str, list]] = {}
        for codec in cfg.codecs:
            for method in cfg.qpmaps:
                curve = []
                for qp, k in rate_points(cfg, method):
                    specs = [PointSpec(m, codec, method, qp, k) for m in members]
                    if not all(s in results for s in specs):
                        continue  # a failed point leaves a hole; the curve goes on without it
                    rs = [results[s] for s in specs]
                    matched = _matched(gt, dict(zip(specs, rs, strict=True)))
                    row = _curve_row(gname, codec, method, specs[0], rs, matched, samples)
                    curve.append(row)
                curves += curve
                if len(curve) > 1 and len({c["bits"] for c in curve}) == 1:
                    notes.append(f"{gname} {codec} {method}: every rate point gave the same bits; this "
                                 "source ignores the base QP (an absolute map, e.g. auto): use --qp-offsets")
                boot[(codec, method)] = {
                    "bpp": [c["bpp"] for c in curve], "psnr": [c["psnr_y"] for c in curve],
                    "map50": [c["map50"] for c in curve], "map": [c["map"] for c in curve],
                    "boot50": [c.pop("_boot50") for c in curve], "boot": [c.pop("_boot") for c in curve]}
            anchor = boot[(codec, ANCHOR)]
            for method in cfg.qpmaps:
                if method != ANCHOR:
                    bd_rows.append(_bd_row(gname, codec, method, anchor, boot[(codec, method)]))

    warn = list(notes)
    builds: dict[str, set[str]] = {}
    for spec, r in results.items():
        builds.setdefault(spec.codec, set()).add(f"{r['versions'].get('ffmpeg/encoder')} "
                                                 f"({r['versions'].get('encoder_detail')})")
    warn += [f"{codec} points come from different encoder builds: {sorted(b)}; curves mix them"
             for codec, b in builds.items() if len(b) > 1]
    for b in bd_rows:
        warn += [f"{b['group']} {b['codec']} {b['method']}: {w}" for w in b["warnings"]]
    return BenchResult(cfg, {k: _strip(v) for k, v in sources.items()}, points, curves, bd_rows, reference,
                       failures, warn)


def _ground_truth(cfg: BenchConfig, sources: dict[str, dict], class_names: list[str]) -> GroundTruth:
    frames: dict[Key, list] = {(inp, i): d for inp, s in sources.items()
                               for i, d in enumerate(s["detections"])}
    if cfg.gt:
        return GroundTruth.from_coco_file(cfg.gt, frames, class_names)
    return GroundTruth.from_detections(frames, {inp: (s["width"], s["height"]) for inp, s in sources.items()})


def _matched(gt: GroundTruth, results: dict[PointSpec, dict] | None, sources: dict | None = None) -> Matched:
    per = {s.input: r["detections"] for s, r in results.items()} if results else \
        {inp: s["detections"] for inp, s in (sources or {}).items()}
    return gt.match({(inp, i): d for inp, dets in per.items() for i, d in enumerate(dets)})


def _map_pct(m: Matched, samples: np.ndarray) -> dict:
    s = m.scores()
    out = {"map50": 100 * s.map50, "map": 100 * s.map, "map50_ci": None, "map_ci": None}
    if len(samples):
        reps = [m.scores(smp) for smp in samples]
        out["_boot50"] = [100 * r.map50 for r in reps]
        out["_boot"] = [100 * r.map for r in reps]
        out["map50_ci"] = percentile_ci(out["_boot50"])
        out["map_ci"] = percentile_ci(out["_boot"])
    else:
        out["_boot50"], out["_boot"] = [], []
    return out


def _curve_row(group: str, codec: str, method: str, spec: PointSpec, rs: list[dict], m: Matched,
               samples: np.ndarray) -> dict:
    bits = sum(r["bits"] for r in rs)
    pixels = sum(r["width"] * r["height"] * r["frames"] for r in rs)
    psnrs = [p for r in rs for p in (r["psnr_y_per_frame"] or [])]
    timing = {k: round(sum(r["timing"][k] for r in rs), 4) for k in ("map_s", "encode_s", "other_s")}
    scores = _map_pct(m, samples)
    return {"group": group, "codec": codec, "method": method, "qp": spec.qp, "qp_offset": spec.qp_offset,
            "rate": spec.rate_label, "frames": sum(r["frames"] for r in rs), "bits": bits,
            "side_bits": sum(r["side_bits"] for r in rs), "bpp": bits / pixels,
            "psnr_y": float(np.mean(psnrs)) if psnrs else float("nan"), **scores, **timing,
            "eval_s": round(sum(r["eval_s"] for r in rs), 4)}


def _bd_row(group: str, codec: str, method: str, a: dict, t: dict) -> dict:
    row: dict = {"group": group, "codec": codec, "method": method, "anchor": ANCHOR,
                 "points": [len(a["bpp"]), len(t["bpp"])], "warnings": []}
    pairs = (("bd_rate_map50", bdrate.bd_rate, "map50", "boot50", "BD-rate(mAP@.5)"),
             ("bd_rate_map", bdrate.bd_rate, "map", "boot", "BD-rate(mAP)"),
             ("bd_map50", bdrate.bd_quality, "map50", "boot50", "BD-mAP@.5"),
             ("bd_map", bdrate.bd_quality, "map", "boot", "BD-mAP"),
             ("bd_rate_psnr", bdrate.bd_rate, "psnr", None, "BD-rate(PSNR)"),
             ("bd_psnr", bdrate.bd_quality, "psnr", None, "BD-PSNR"))
    for name, fn, metric, bkey, label in pairs:
        r = fn(a["bpp"], a[metric], t["bpp"], t[metric], label)
        row[name] = r.value
        row[f"{name}_overlap"] = r.overlap
        row["warnings"] += r.warnings
        if bkey and a[bkey] and all(a[bkey]) and t[bkey] and all(t[bkey]):
            reps = len(a[bkey][0])
            vals = [fn(a["bpp"], [c[i] for c in a[bkey]], t["bpp"], [c[i] for c in t[bkey]], label).value
                    for i in range(reps)]
            row[f"{name}_ci"] = percentile_ci(vals)
        elif bkey:
            row[f"{name}_ci"] = None
    return row
