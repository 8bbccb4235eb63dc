"""``run_bench``: run the grid (resumable, parallel), score it, compute BD figures.

Work happens in resumable batches through :func:`vcmtool.runner.run_items`: the task model
on each uncompressed input, then every rate point, then each further judge
(:mod:`vcmtool.bench.judges`) on the uncompressed inputs and on every finished point's stream.
Scoring and BD figures are cheap and are recomputed from the stored results on every run, so a
resumed or extended bench (more points, or another judge) always reports over everything
finished so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcmtool.bench.grid import (
    ANCHOR,
    BenchConfig,
    PointSpec,
    applies,
    groups,
    make_spec,
    point_item,
    point_specs,
    rate_points,
    source_item,
)
from vcmtool.bench.judges import judge_item, judge_point, judge_source_item, resolve_judges
from vcmtool.bench.methods import resolve, scaled_name
from vcmtool.bench.points import encode_point, source_point
from vcmtool.encoders import get_encoder
from vcmtool.errors import InputError, UsageError
from vcmtool.eval import bdrate
from vcmtool.eval.coco import GroundTruth, Key, Matched, bootstrap_samples, percentile_ci
from vcmtool.runner import run_items

MIN_RATE_POINTS = 4  # docs/design.md, "Evaluation protocol": at least four rate points per curve
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
    judges: dict[str, str] = field(default_factory=dict)  # judge -> model version; the task model first


def validate(cfg: BenchConfig) -> list[str]:
    notes: list[str] = []
    if not cfg.inputs:
        raise UsageError("bench needs at least one input")
    for c in cfg.codecs:
        get_encoder(c)  # unknown names fail here, with the list of known ones
    cfg.qpmaps = [resolve(m).name for m in cfg.qpmaps]  # unknown names fail here; canonical names
    notes += _cross_scales(cfg)
    for m in cfg.qpmaps:
        allowed = resolve(m).task_models
        if allowed and cfg.task_model not in allowed:
            raise UsageError(
                f"method {m} scores with its own receiver detector; compare it under "
                f"--task-model {' or '.join(allowed)}, not {cfg.task_model}"
            )
    if len(set(cfg.qpmaps)) != len(cfg.qpmaps):
        raise UsageError(f"--qpmap names a method twice: {', '.join(cfg.qpmaps)}")
    offsets = cfg.qp_offsets or []
    if len(set(cfg.qps)) != len(cfg.qps) or len(set(offsets)) != len(offsets):
        raise UsageError("--qps / --qp-offsets contain a value twice")
    if ANCHOR not in cfg.qpmaps:
        cfg.qpmaps = [ANCHOR, *cfg.qpmaps]
        notes.append("added the uniform-QP anchor 'none': BD figures are measured against it")
    for c in cfg.codecs:
        skipped = [m for m in cfg.qpmaps if not applies(cfg, c, m)]
        if skipped:
            notes.append(
                f"{c} sets one QP per frame: {', '.join(skipped)} not run on it "
                "(--allow-frame-qp codes each map's frame mean)"
            )
    for m in cfg.qpmaps:
        n = len(rate_points(cfg, m))
        if n < MIN_RATE_POINTS:
            notes.append(f"{m}: {n} rate points; BD figures want at least {MIN_RATE_POINTS}")
    if cfg.gt and not Path(cfg.gt).is_file():
        raise UsageError(f"--gt {cfg.gt}: no such file")
    return notes


def _cross_scales(cfg: BenchConfig) -> list[str]:
    """Every method at every scale of ``cfg.scales`` (``none`` -> ``none``, ``none@0.75``, ...);
    names that already carry a scale, and methods with their own receiver, stay as they are."""
    from vcmtool.resample import canonical_scale

    scales = list(dict.fromkeys(canonical_scale(s, "--scales") for s in cfg.scales or ["1"]))
    cfg.scales = scales
    if scales == ["1"]:
        return []
    notes, out = [], []
    for m in cfg.qpmaps:
        method = resolve(m)
        if method.scale != "1" or "@" in m:
            out.append(m)
        elif method.receiver is not None or method.present is not None:
            out.append(m)
            notes.append(f"{m}: scores with its own receiver; not run at --scales {','.join(scales)}")
        else:
            out += [resolve(scaled_name(m, s)).name for s in scales]
    cfg.qpmaps = list(dict.fromkeys(out))
    return notes


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "detections"}


@dataclass
class Gathered:
    """Everything a bench computed before scoring: the reference detections, each point's result,
    the failures and notes, and the other judges' detections (see ``score``)."""

    sources: dict[str, dict]
    results: dict[PointSpec, dict]
    failures: list[dict]
    notes: list[str]
    judged: dict[str, tuple[dict, dict]]


def run_bench(cfg: BenchConfig) -> BenchResult:
    g = gather(cfg)
    return score(cfg, g.sources, g.results, g.failures, g.notes, g.judged)


def gather(cfg: BenchConfig) -> Gathered:
    """Run (or load from ``cfg.output``'s state) every point and judge; nothing is scored yet."""
    notes = validate(cfg)
    out = Path(cfg.output)
    state = out / "state"
    stream_dir = out / "streams"
    stream_dir.mkdir(parents=True, exist_ok=True)

    judges = resolve_judges(cfg.task_model, cfg.judges)
    cfg.judges = judges
    sources: dict[str, dict] = {}
    src_items = [source_item(cfg, inp) for inp in cfg.inputs]
    for o in run_items(
        source_point,
        src_items,
        state / "sources",
        cfg.workers,
        cfg.engine,
        cfg.address,
        desc="reference detections",
    ):
        if not o.ok:
            raise InputError(f"{o.item.payload['input']}: {o.error}")
        sources[o.item.payload["input"]] = o.result

    results: dict[PointSpec, dict] = {}
    failures: list[dict] = []
    items = {}
    for s in point_specs(cfg):
        it = point_item(cfg, s, str(stream_dir))
        items[it.key] = s
    for o in run_items(
        encode_point,
        [point_item(cfg, s, str(stream_dir)) for s in items.values()],
        state / "points",
        cfg.workers,
        cfg.engine,
        cfg.address,
        desc="rate points",
    ):
        spec = items[o.item.key]
        if o.ok:
            results[spec] = {**o.result, "key": o.item.key, "cached": o.cached}
        else:
            failures.append(
                {"point": f"{spec.input} {spec.codec} {spec.qpmap} {spec.rate_label}", "error": o.error}
            )
    if failures:
        notes.append(f"{len(failures)} rate point(s) failed; see failures (rerun to retry them)")
    judged = _run_judges(cfg, judges, results, state, failures, notes)
    return Gathered(sources, results, failures, notes, judged)


def _run_judges(
    cfg: BenchConfig,
    judges: list[str],
    results: dict[PointSpec, dict],
    state: Path,
    failures: list[dict],
    notes: list[str],
) -> dict[str, tuple[dict, dict]]:
    """Every judge beside the task model on the uncompressed inputs and on each point's stream."""
    judged: dict[str, tuple[dict, dict]] = {}
    for judge in judges[1:]:
        srcs: dict[str, dict] = {}
        items = [judge_source_item(cfg, judge, inp) for inp in cfg.inputs]
        for o in run_items(
            source_point,
            items,
            state / "sources",
            cfg.workers,
            cfg.engine,
            cfg.address,
            desc=f"reference detections ({judge})",
        ):
            if not o.ok:
                raise InputError(f"{o.item.payload['input']} (judge {judge}): {o.error}")
            srcs[o.item.payload["input"]] = o.result
        by_key = {
            judge_item(s, r["key"], r, judge).key: s
            for s, r in results.items()
            if resolve(s.qpmap).receiver is None
        }
        dets: dict[PointSpec, list] = {}
        work = [judge_item(s, results[s]["key"], results[s], judge) for s in by_key.values()]
        bad = 0
        for o in run_items(
            judge_point, work, state / "judges", cfg.workers, cfg.engine, cfg.address, desc=f"judge {judge}"
        ):
            spec = by_key[o.item.key]
            if o.ok:
                dets[spec] = o.result["detections"]
            else:
                bad += 1
                failures.append(
                    {
                        "point": f"{spec.input} {spec.codec} {spec.qpmap} {spec.rate_label} (judge {judge})",
                        "error": o.error,
                    }
                )
        if bad:
            notes.append(f"judge {judge}: {bad} rate point(s) not scored; see failures (rerun to retry)")
        judged[judge] = (srcs, dets)
    return judged


def score(
    cfg: BenchConfig,
    sources: dict[str, dict],
    results: dict[PointSpec, dict],
    failures: list[dict],
    notes: list[str],
    judged: dict[str, tuple[dict, dict]] | None = None,
) -> BenchResult:
    """Scores, curves and BD rows. ``judged``: for each judge beside the task model, its source
    results (pseudo ground truth) and its detections per point; every row carries all judges'
    figures under ``judges`` and the task model's at its top level."""
    primary = cfg.task_model
    judges: dict[str, tuple[dict, dict]] = {
        primary: (sources, {s: r["detections"] for s, r in results.items()}),
        **(judged or {}),
    }
    grouping = groups(cfg.inputs, {k: v["frames"] for k, v in sources.items()}, cfg.pool)
    points, curves, bd_rows, reference = [], [], [], []

    for inp in cfg.inputs:
        gts = {j: _ground_truth(cfg, {inp: srcs[inp]}) for j, (srcs, _) in judges.items()}
        for spec, r in results.items():
            if spec.input == inp:
                js = {}
                for j, (_, dets) in judges.items():
                    if spec in dets:
                        s = _matched(gts[j], {spec: dets[spec]}).scores()
                        js[j] = {
                            "map50": 100 * s.map50,
                            "map": 100 * s.map,
                            "ap50_person": 100 * s.ap50_person,
                        }
                points.append({**_strip(r), **js[primary], "judges": js})

    for gname, members in grouping.items():
        gts = {j: _ground_truth(cfg, {m: srcs[m] for m in members}) for j, (srcs, _) in judges.items()}
        for j, g in gts.items():
            if not cfg.gt and not g.objects():
                flicker = g.dont_care()
                dont_care = f" ({flicker} flickering ones are don't-care)" if flicker else ""
                notes.append(
                    f"{gname}: judge {j} has no pseudo ground-truth object{dont_care}; "
                    "its mAP figures are n/a"
                )
        n = len(gts[primary].keys)
        samples = bootstrap_samples(n, cfg.bootstrap if n >= MIN_BOOTSTRAP_FRAMES else 0)
        if cfg.bootstrap and n < MIN_BOOTSTRAP_FRAMES:
            notes.append(
                f"{gname}: {n} frames, too few for bootstrap intervals (needs "
                f"{MIN_BOOTSTRAP_FRAMES}); its figures carry no CI"
            )
        refs = {}
        for j, (srcs, _) in judges.items():
            ref = _matched(gts[j], {PointSpec(m, "", "", 0): srcs[m]["detections"] for m in members})
            refs[j] = _public(_map_pct(ref, samples))
        reference.append({"group": gname, "frames": n, **refs[primary], "judges": refs})
        boot: dict[tuple[str, str, str], dict[str, list]] = {}
        for codec in cfg.codecs:
            for method in cfg.qpmaps:
                curve = []
                series = {j: _series() for j in judges}
                for qp, k in rate_points(cfg, method):
                    specs = [make_spec(cfg, m, codec, method, qp, k) for m in members]
                    if not all(s in results for s in specs):
                        continue  # a failed point leaves a hole; the curve goes on without it
                    rs = [results[s] for s in specs]
                    row = _curve_row(gname, codec, method, specs[0], rs)
                    js = {}
                    for j, (_, dets) in judges.items():
                        if all(s in dets for s in specs):
                            sc = _map_pct(_matched(gts[j], {s: dets[s] for s in specs}), samples)
                            _extend(series[j], row, sc)
                            js[j] = _public(sc)
                    curve.append({**row, **js[primary], "judges": js})
                curves += curve
                if len(curve) > 1 and len({c["bits"] for c in curve}) == 1:
                    notes.append(
                        f"{gname} {codec} {method}: every rate point gave the same bits; this "
                        "source ignores the base QP (an absolute map, e.g. auto): use --qp-offsets"
                    )
                for j in judges:
                    boot[(j, codec, method)] = series[j]
            for method in cfg.qpmaps:
                if method == ANCHOR or not applies(cfg, codec, method):
                    continue  # a method the encoder cannot code has no row (a note says so)
                row = _bd_row(
                    gname, codec, method, boot[(primary, codec, ANCHOR)], boot[(primary, codec, method)]
                )
                row["judges"] = {primary: _judge_bd(row)}
                for j in list(judges)[1:]:
                    a, t = boot[(j, codec, ANCHOR)], boot[(j, codec, method)]
                    row["judges"][j] = _judge_bd(_bd_row(gname, codec, method, a, t)) if t["bpp"] else None
                bd_rows.append(row)

    warn = list(notes)
    builds: dict[str, set[str]] = {}
    for spec, r in results.items():
        builds.setdefault(spec.codec, set()).add(
            f"{r['versions'].get('ffmpeg/encoder')} ({r['versions'].get('encoder_detail')})"
        )
    warn += [
        f"{codec} points come from different encoder builds: {sorted(b)}; curves mix them"
        for codec, b in builds.items()
        if len(b) > 1
    ]
    for b in bd_rows:
        warn += [f"{b['group']} {b['codec']} {b['method']}: {w}" for w in b["warnings"]]
        for j, jb in list(b["judges"].items())[1:]:
            if jb is None:
                continue
            warn += [f"{b['group']} {b['codec']} {b['method']} (judge {j}): {w}" for w in jb["warnings"]]
    versions = {j: next(iter(srcs.values()))["task_model"] for j, (srcs, _) in judges.items()}
    return BenchResult(
        cfg,
        {k: _strip(v) for k, v in sources.items()},
        points,
        curves,
        bd_rows,
        reference,
        failures,
        warn,
        versions,
    )


def _ground_truth(cfg: BenchConfig, sources: dict[str, dict]) -> GroundTruth:
    class_names = next(iter(sources.values()))["class_names"]
    frames: dict[Key, list] = {
        (inp, i): d for inp, s in sources.items() for i, d in enumerate(s["detections"])
    }
    if cfg.gt:
        gt = GroundTruth.from_coco_file(cfg.gt, frames, class_names)
    else:
        sizes = {inp: (s["width"], s["height"]) for inp, s in sources.items()}
        gt = GroundTruth.from_detections(frames, sizes, cfg.gt_min_score, cfg.gt_stable)
    return gt.set_person(class_names)


def _matched(gt: GroundTruth, dets: dict[PointSpec, list]) -> Matched:
    """Match the per-frame detections of one rate point (one spec per input) to the ground truth."""
    return gt.match({(s.input, i): d for s, frames in dets.items() for i, d in enumerate(frames)})


def _map_pct(m: Matched, samples: np.ndarray) -> dict:
    s = m.scores()
    out = {
        "map50": 100 * s.map50,
        "map": 100 * s.map,
        "map50_ci": None,
        "map_ci": None,
        "ap50_person": 100 * s.ap50_person,
        "ap50_person_ci": None,
    }
    if len(samples):
        reps = [m.scores(smp) for smp in samples]
        out["_boot50"] = [100 * r.map50 for r in reps]
        out["_boot"] = [100 * r.map for r in reps]
        out["_bootp"] = [100 * r.ap50_person for r in reps]
        out["map50_ci"] = percentile_ci(out["_boot50"])
        out["map_ci"] = percentile_ci(out["_boot"])
        out["ap50_person_ci"] = percentile_ci(out["_bootp"])
    else:
        out["_boot50"], out["_boot"], out["_bootp"] = [], [], []
    return out


def _public(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if not k.startswith("_")}


def _series() -> dict[str, list]:
    return {k: [] for k in ("bpp", "psnr", "map50", "map", "ap50_person", "boot50", "boot", "bootp")}


def _extend(series: dict[str, list], row: dict, sc: dict) -> None:
    series["bpp"].append(row["bpp"])
    series["psnr"].append(row["psnr_y"])
    for k in ("map50", "map", "ap50_person"):
        series[k].append(sc[k])
    for k in ("_boot50", "_boot", "_bootp"):
        series[k[1:]].append(sc[k])


JUDGE_BD_KEYS = (
    "bd_rate_map50",
    "bd_rate_map",
    "bd_map50",
    "bd_map",
    "bd_map50_low",
    "bd_rate_ap50_person",
)


def _judge_bd(row: dict) -> dict:
    """The task-accuracy part of a BD row (PSNR does not depend on the judge)."""
    keep = {k for b in JUDGE_BD_KEYS for k in (b, f"{b}_ci", f"{b}_overlap", f"{b}_boot")}
    return {
        **{k: v for k, v in row.items() if k in keep},
        "points": row["points"],
        "warnings": row["warnings"],
    }


def _curve_row(group: str, codec: str, method: str, spec: PointSpec, rs: list[dict]) -> dict:
    bits = sum(r["bits"] for r in rs)
    pixels = sum(r["width"] * r["height"] * r["frames"] for r in rs)
    psnrs = [p for r in rs for p in (r["psnr_y_per_frame"] or [])]
    timing = {k: round(sum(r["timing"][k] for r in rs), 4) for k in ("map_s", "encode_s", "other_s")}
    scales = sorted({float(r.get("scale", 1.0)) for r in rs})  # auto may pick per input
    return {
        "group": group,
        "codec": codec,
        "method": method,
        "scale": scales[0] if len(scales) == 1 else ";".join(f"{x:g}" for x in scales),
        "qp": spec.qp,
        "qp_offset": spec.qp_offset,
        "rate": spec.rate_label,
        "frames": sum(r["frames"] for r in rs),
        "bits": bits,
        "side_bits": sum(r["side_bits"] for r in rs),
        "bpp": bits / pixels,
        "psnr_y": float(np.mean(psnrs)) if psnrs else float("nan"),
        **timing,
        "eval_s": round(sum(r["eval_s"] for r in rs), 4),
    }


# BD figures whose bootstrap replicates the results keep: the samples are seeded by the frame
# count, so two runs over the same frames resample identically and their difference has a paired
# CI (benchmarks/paired_delta.py), much narrower than two independent CIs side by side
PAIRED_KEYS = ("bd_rate_map50", "bd_rate_map", "bd_map50_low")


def _bd_row(group: str, codec: str, method: str, a: dict, t: dict) -> dict:
    row: dict = {
        "group": group,
        "codec": codec,
        "method": method,
        "anchor": ANCHOR,
        "points": [len(a["bpp"]), len(t["bpp"])],
        "warnings": [],
    }
    pairs = (
        ("bd_rate_map50", bdrate.bd_rate, "map50", "boot50", "BD-rate(mAP@.5)"),
        ("bd_rate_map", bdrate.bd_rate, "map", "boot", "BD-rate(mAP)"),
        ("bd_map50", bdrate.bd_quality, "map50", "boot50", "BD-mAP@.5"),
        ("bd_map", bdrate.bd_quality, "map", "boot", "BD-mAP"),
        ("bd_map50_low", bdrate.bd_quality_band, "map50", "boot50", "BD-mAP@.5 (lower half of rates)"),
        ("bd_rate_ap50_person", bdrate.bd_rate, "ap50_person", "bootp", "BD-rate(person AP@.5)"),
        ("bd_rate_psnr", bdrate.bd_rate, "psnr", None, "BD-rate(PSNR)"),
        ("bd_psnr", bdrate.bd_quality, "psnr", None, "BD-PSNR"),
    )
    for name, fn, metric, bkey, label in pairs:
        if metric == "ap50_person" and not any(np.isfinite(v) for v in a[metric]):
            row[name], row[f"{name}_overlap"], row[f"{name}_ci"] = None, None, None
            continue  # no person in the ground truth: nothing to say, and no warning about it
        r = fn(a["bpp"], a[metric], t["bpp"], t[metric], label)
        row[name] = r.value
        row[f"{name}_overlap"] = r.overlap
        row["warnings"] += r.warnings
        if bkey and a[bkey] and all(a[bkey]) and t[bkey] and all(t[bkey]):
            reps = len(a[bkey][0])
            vals = [
                fn(a["bpp"], [c[i] for c in a[bkey]], t["bpp"], [c[i] for c in t[bkey]], label).value
                for i in range(reps)
            ]
            row[f"{name}_ci"] = percentile_ci(vals)
            if name in PAIRED_KEYS:  # the replicates, so two runs' rows can be compared pairwise
                row[f"{name}_boot"] = [round(v, 3) if np.isfinite(v) else None for v in vals]
        elif bkey:
            row[f"{name}_ci"] = None
    return row
