"""The MFIBA experiments behind ``vcmtool mfiba fit | eval | features``: fits, BD-rate loops and
the JSON / Markdown / PNG results they write (docs/mfiba/). The CLI only parses options and prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vcmtool.errors import UsageError

FLOOR_SHARE = 0.05


def fit_curves(pts: list[tuple[float, float, float]]) -> dict:
    """Cauchy and quadratic loss-rate fits of (bpp, loss mAP@[.5:.95], loss mAP@.5) points."""
    from vcmtool.ratecontrol.models import CauchyLossRate, QuadraticLossRate

    bpp = np.array([p[0] for p in pts])
    out = {}
    for i, metric in ((1, "map50_95"), (2, "map50")):
        loss = np.array([p[i] for p in pts])
        cm, cs = CauchyLossRate.fit(bpp, loss)
        qm, qs = QuadraticLossRate.fit(bpp, loss)
        out[metric] = {
            "cauchy": {**cm.to_json(), **cs.to_json()},
            "quadratic": {**qm.to_json(), **qs.to_json()},
        }
    return out


# ---------------------------------------------------------------------------------------------
# vcmtool mfiba fit


def run_fit(
    output: str | Path, plot_dir: str | Path | None, state_dir: str | Path, workers: int, encoders: str
) -> dict:
    """Fit the task loss-rate models, class importance and rate-QP priors on development media.

    Writes the parameter JSON to ``output`` (and PNG plots to ``plot_dir``); returns the document
    (with ``plots``, the PNG paths, when plots were written).
    """
    from vcmtool.atomic import write_text_atomic
    from vcmtool.encoders import get_encoder
    from vcmtool.lab.mfiba import fit as fitlib
    from vcmtool.lab.mfiba.plots import fit_plots
    from vcmtool.provenance import base_versions, git_commit
    from vcmtool.ratecontrol.models import RateQPModel
    from vcmtool.runner import Item, run_items
    from vcmtool.tasks import get_task_model

    t0 = time.perf_counter()
    items = [Item(f"img-{im.name}", {"image": im.__dict__}) for im in fitlib.DEV_IMAGES]
    results, errors = [], []
    for oc in run_items(fitlib.measure_image, items, Path(state_dir), workers=workers, desc="mfiba fit"):
        (results.append(oc.result) if oc.ok else errors.append(f"{oc.item.key}: {oc.error}"))
    results = [r for r in results if r["reference"]]
    with_gt = [r for r in results if any(p["cond"] == "instance" for p in r["points"])]
    if len(with_gt) < 2:
        raise UsageError(f"only {len(with_gt)} development images had detections; cannot fit")
    curve = [fitlib.pooled_loss(with_gt, "uniform", q) for q in fitlib.QPS]
    cls_curves, dens = {}, {}
    inst_area = float(np.mean([r["instance_area"] for r in with_gt]))
    # loss is measured relative to both classes at the reference QP (the metric is not 0 there)
    base = fitlib.pooled_loss(with_gt, "uniform", fitlib.REF_QP)[1]
    raw = {}
    for cls, share in (("instance", inst_area), ("background", 1 - inst_area)):
        pts = [(q, fitlib.pooled_loss(with_gt, cls, q)[1]) for q in fitlib.DEGRADE_QPS]
        cls_curves[cls] = pts
        raw[cls] = (float(np.mean([p[1] for p in pts])) - base) / share
    # a class whose degradation did not measurably hurt keeps a small floor, never zero weight
    floor = FLOOR_SHARE * max(max(raw.values()), 1e-6)
    dens = {k: max(v, floor) for k, v in raw.items()}
    total = sum(dens.values())
    fits = fit_curves(curve)
    rq = {}
    for enc in [e.strip() for e in encoders.split(",") if e.strip()]:
        try:
            if not get_encoder(enc).probe().available:
                continue
            pts = fitlib.rate_qp_points(enc)
        except Exception as e:  # noqa: BLE001 - an encoder that cannot run is skipped and recorded
            errors.append(f"rate-qp {enc}: {e}")
            continue
        m, s = RateQPModel.fit([p[0] for p in pts], [p[1] for p in pts])
        rq[enc] = {
            **m.to_json(),
            **s.to_json(),
            "points": [[q, round(b, 6)] for q, b in pts],
            "clip": "carphone_pristine.mp4 first 30 frames, I then P, preset medium, uniform QP",
        }
    doc = {
        "loss_rate": {
            "cauchy": {k: fits["map50_95"]["cauchy"][k] for k in ("alpha", "beta")},
            "metric": "loss = 100*(1 - mAP@[.5:.95]) vs pseudo-GT, rate in bpp",
        },
        "loss_rate_fits": fits,
        "curve": [
            {"qp": q, "bpp": round(p[0], 6), "loss_map50_95": round(p[1], 4), "loss_map50": round(p[2], 4)}
            for q, p in zip(fitlib.QPS, curve, strict=True)
        ],
        "importance": {
            "density": {k: round(v / total, 6) for k, v in dens.items()},
            "mean_loss": {k: round(float(np.mean([p[1] for p in v])), 4) for k, v in cls_curves.items()},
            "baseline_loss": round(base, 4),
            "raw_density": {k: round(v, 6) for k, v in raw.items()},
            "floor_share": FLOOR_SHARE,
            "instance_area_share": round(inst_area, 4),
            "curves": {k: [[q, round(v, 4)] for q, v in pts] for k, pts in cls_curves.items()},
            "reference_qp": fitlib.REF_QP,
            "how": "MFIP-style: degrade only one CTU class (pseudo-GT boxes = instance) at QPs "
            f"{list(fitlib.DEGRADE_QPS)} with the other at QP {fitlib.REF_QP}; density = (mean loss - "
            "loss with both at the reference QP) / area share, floored at floor_share of the largest, "
            "normalised to sum 1",
        },
        "rate_qp": rq,
        "obtained": {
            "images": [r["name"] for r in with_gt],
            "skipped_no_detections": [r["name"] for r in results if r not in with_gt],
            "encoder": f"kvazaar intra, preset {fitlib.FIT_PRESET}, ctu {fitlib.CTU}, "
            f"uniform QPs {list(fitlib.QPS)}",
            "task_model": get_task_model("yolov3-tiny").version,
            "command": "vcmtool mfiba fit",
            "git": git_commit(),
            "versions": base_versions(),
            "errors": errors,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    write_text_atomic(Path(output), json.dumps(doc, indent=1) + "\n")
    if plot_dir:
        doc["plots"] = fit_plots(doc, curve, cls_curves, rq, Path(plot_dir))
    return doc


# ---------------------------------------------------------------------------------------------
# vcmtool mfiba eval


def run_eval(
    clips: Sequence[str],
    codecs: str,
    qpmaps: str,
    targets: Sequence[float],
    preset: str,
    task: bool,
    out_dir: str | Path,
    state_dir: str | Path,
    workers: int,
) -> tuple[dict, list[str]]:
    """Target-rate accuracy and MFIBA-vs-uniform BD-rate on development clips (``NAME:FRAMES[:SKIP]``).

    Writes ``target_eval.json`` and ``target_eval.md`` to ``out_dir``; returns the document and
    the Markdown lines.
    """
    from vcmtool.atomic import write_text_atomic
    from vcmtool.eval.bdrate import bd_rate
    from vcmtool.io import open_video
    from vcmtool.lab.mfiba import evaluate as ev
    from vcmtool.runner import Item, run_items

    out = Path(out_dir)
    streams = Path(state_dir) / "streams"
    streams.mkdir(parents=True, exist_ok=True)
    targets = list(targets)
    items, refs = [], []
    for spec in clips:
        name, n, skip = (spec.split(":") + ["30", "0"])[:3]
        c = ev.EvalClip(name, int(n), int(skip))
        info = open_video(ev.clip_path(name)).info
        scale = info.width * info.height * float(info.fps) / 1000.0
        tag = f"{name}-{c.frames}" + (f"s{c.skip}" if c.skip else "")
        refs.append(Item(f"ref-{tag}", {"clip": c.__dict__}))
        for codec in codecs.split(","):
            for qm in qpmaps.split(","):
                for t in targets:
                    key = f"{tag}-{codec}-{qm}-{preset}-{t}"
                    items.append(
                        Item(
                            key,
                            ev.payload(
                                c, codec, qm, round(t * scale, 3), preset, str(streams / f"{key}.bin"), task
                            ),
                        )
                    )
    res = {o.item.key: o for o in run_items(ev.target_point, items, Path(state_dir), workers, desc="targets")}
    ref = (
        {o.item.key: o for o in run_items(ev.reference_point, refs, Path(state_dir), workers, desc="refs")}
        if task
        else {}
    )
    rows, errors = [], []
    for it in items:
        o = res[it.key]
        if not o.ok:
            errors.append(f"{it.key}: {o.error}")
            continue
        r, t = o.result, o.result["target"]
        rows.append(
            {
                "clip": r["clip"],
                "frames": r["frames"],
                "codec": r["codec"],
                "qpmap": r["qpmap"],
                "target_kbps": t["kbps"],
                "achieved_kbps": t["achieved_kbps"],
                "error_pct": t["error_pct"],
                "passes": t["passes"],
                "psnr_y": r["psnr_y"],
                "class_qp": t["class_qp"],
                "notes": r["notes"] + t["notes"],
                "key": it.key,
            }
        )
    bd = []
    if task:
        for rk, ro in ref.items():
            if not ro.ok:
                errors.append(f"{rk}: {ro.error}")
                continue
            clip = ro.result["clip"]
            for codec in codecs.split(","):
                curves = {}
                for qm in qpmaps.split(","):
                    pts = [
                        res[it.key].result
                        for it in items
                        if res[it.key].ok
                        and it.payload["qpmap"] == qm
                        and it.payload["codec"] == codec
                        and it.payload["clip"]["name"] == clip
                    ]
                    curves[qm] = ev.task_scores(ro.result, pts)
                for row in rows:
                    if row["clip"] == clip and row["codec"] == codec:
                        i = [
                            r
                            for r in rows
                            if r["clip"] == clip and r["codec"] == codec and r["qpmap"] == row["qpmap"]
                        ].index(row)
                        sc = curves[row["qpmap"]][i]
                        row["map50_95"], row["map50"] = round(sc[1], 3), round(sc[2], 3)
                anchor = qpmaps.split(",")[0]
                for qm in qpmaps.split(",")[1:]:
                    for j, metric in ((1, "mAP@[.5:.95]"), (2, "mAP@.5")):
                        a, b = curves[anchor], curves[qm]
                        r = bd_rate(
                            [p[0] for p in a], [p[j] for p in a], [p[0] for p in b], [p[j] for p in b]
                        )
                        bd.append(
                            {
                                "clip": clip,
                                "codec": codec,
                                "anchor": anchor,
                                "test": qm,
                                "metric": metric,
                                "bd_rate_pct": None if r.value != r.value else round(r.value, 2),
                                "notes": r.warnings,
                            }
                        )
    doc = {"rows": rows, "bd_rate": bd, "errors": errors, "preset": preset, "targets_bpp": targets}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "target_eval.json", json.dumps(doc, indent=1) + "\n")
    md = [
        "| clip | frames | codec | qpmap | target kbps | achieved kbps | error % | passes | PSNR-Y |"
        " mAP@[.5:.95] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['clip']} | {r['frames']} | {r['codec']} | {r['qpmap']} | {r['target_kbps']:.1f} | "
            f"{r['achieved_kbps']:.1f} | {r['error_pct']:+.2f} | {r['passes']} | {r['psnr_y']:.2f} | "
            f"{r.get('map50_95', float('nan')):.2f} |"
        )
    if bd:
        md += ["", "| clip | codec | anchor | test | metric | BD-rate % |", "|---|---|---|---|---|---|"]
        md += [
            f"| {b['clip']} | {b['codec']} | {b['anchor']} | {b['test']} | {b['metric']} | "
            f"{b['bd_rate_pct']} |"
            for b in bd
        ]
    write_text_atomic(out / "target_eval.md", "\n".join(md) + "\n")
    return doc, md


# ---------------------------------------------------------------------------------------------
# vcmtool mfiba features


def pooled(
    results: list[dict], points_of: Callable[[dict], dict], sizes_key=("width", "height")
) -> tuple[float, float, float]:
    """(bpp, mAP@[.5:.95] %, mAP@.5 %) of one rate point pooled over images vs pseudo-GT."""
    from vcmtool.eval.coco import GroundTruth

    frames, dets, sizes, bits, pix = {}, {}, {}, 0, 0
    for r in results:
        p = points_of(r)
        key = (r["name"], 0)
        frames[key], dets[key] = r["reference"], p["detections"]
        sizes[r["name"]] = (r[sizes_key[0]], r[sizes_key[1]])
        bits += p["bits"]
        pix += r["width"] * r["height"]
    s = GroundTruth.from_detections(frames, sizes).match(dets).scores()
    return bits / pix, 100.0 * s.map, 100.0 * s.map50


def run_features(n_images: int, out_dir: str | Path, state_dir: str | Path, workers: int) -> tuple:
    """Feature coding for machines: YOLOv3-tiny split features in a kvazaar atlas, MFIBA vs uniform QP.

    Writes ``fcm.json`` and ``fcm_rd.png`` to ``out_dir``; returns ``(doc, cauchy, cauchy_stats,
    quadratic_stats)``: the document and the dataset loss-rate fits.
    """
    from vcmtool.atomic import write_text_atomic
    from vcmtool.eval.bdrate import bd_rate
    from vcmtool.eval.coco import GroundTruth
    from vcmtool.lab.mfiba import features as fc
    from vcmtool.lab.mfiba.fit import DEV_IMAGES
    from vcmtool.lab.mfiba.plots import fcm_plot
    from vcmtool.ratecontrol.allocate import allocate
    from vcmtool.ratecontrol.models import CauchyLossRate, QuadraticLossRate, RateQPModel
    from vcmtool.runner import Item, run_items

    t0 = time.perf_counter()
    state = Path(state_dir)
    items = [Item(f"pre-{im.name}", {"image": im.__dict__}) for im in DEV_IMAGES]
    done = []
    for oc in run_items(
        fc.precode_image, items[: max(n_images * 2, n_images)], state, workers, desc="fcm precode"
    ):
        if oc.ok and oc.result["scales"]:
            done.append(oc.result)
    order = {it.key[4:]: i for i, it in enumerate(items)}
    done = sorted(done, key=lambda r: order[r["name"]])[:n_images]
    if len(done) < 2:
        raise UsageError("fewer than 2 development images with detections; cannot evaluate")
    # dataset loss-rate fit on the uniform points (offline phase)
    uni = [pooled(done, lambda r, i=i: r["uniform"][i]) for i in range(len(fc.FCM_QPS))]
    bpp = np.array([u[0] for u in uni])
    loss = 100.0 - np.array([u[1] for u in uni])
    cm, cs = CauchyLossRate.fit(bpp, loss)
    qm, qs = QuadraticLossRate.fit(bpp, loss)
    # online phase per image: MFIP weights and per-scale rate-QP models from the pre-coding
    per_image, jobs = {}, []
    for r in done:
        gt = GroundTruth.from_detections(
            {(r["name"], 0): r["reference"]}, {r["name"]: (r["width"], r["height"])}
        )
        d, models, pix = {}, {}, {}
        for s, sc in r["scales"].items():
            losses = [
                100.0 * (1.0 - gt.match({(r["name"], 0): p["detections"]}).scores().map) for p in sc["points"]
            ]
            d[s] = float(np.mean(losses))
            pix[s] = sc["pixels"]
            models[s], _ = RateQPModel.fit(
                [p["qp"] for p in sc["points"]], [max(p["bits"], 1) / sc["pixels"] for p in sc["points"]]
            )
        tot = sum(d.values())
        w = {s: (v / tot if tot > 0 else 1.0 / len(d)) for s, v in d.items()}
        per_image[r["name"]] = {
            "weights": w,
            "mfip_loss": d,
            "rate_qp": {s: m.to_json() for s, m in models.items()},
        }
        qps_list = []
        scales = sorted(d)
        for u in r["uniform"]:
            a = allocate(
                [w[s] for s in scales],
                [pix[s] for s in scales],
                float(u["bits"]),
                cm.alpha,
                cm.beta,
                r_min=[float(models[s].rate(51)) for s in scales],
                r_max=[float(models[s].rate(0)) for s in scales],
            )
            q = {
                s: int(np.clip(np.rint(models[s].qp(rate)), 0, 51))
                for s, rate in zip(scales, a.rates, strict=True)
            }
            qps_list.append(q)
        jobs.append(
            Item(
                f"mfiba-{r['name']}-{cm.beta:.4f}",
                {"image": next(im.__dict__ for im in DEV_IMAGES if im.name == r["name"]), "qps": qps_list},
            )
        )
    res = {
        o.item.payload["image"]["name"]: o.result
        for o in run_items(fc.mfiba_image, jobs, state, workers, desc="fcm mfiba")
        if o.ok
    }
    done = [r for r in done if r["name"] in res]
    uni = [pooled(done, lambda r, i=i: r["uniform"][i]) for i in range(len(fc.FCM_QPS))]
    mf = [pooled(done, lambda r, i=i: res[r["name"]]["points"][i]) for i in range(len(fc.FCM_QPS))]
    bd = {}
    for j, metric in ((1, "mAP@[.5:.95]"), (2, "mAP@.5")):
        b = bd_rate([u[0] for u in uni], [u[j] for u in uni], [m[0] for m in mf], [m[j] for m in mf])
        bd[metric] = {
            "bd_rate_pct": None if b.value != b.value else round(b.value, 2),
            "warnings": b.warnings,
        }
    w_mean = {
        s: round(float(np.mean([p["weights"][s] for p in per_image.values()])), 4) for s in ("16", "32")
    }
    doc = {
        "setting": "YOLOv3-tiny split after the trunk (stride 16: 256x26x26, stride 32: 256x13x13), "
        "16x16 channel tiles, 8-bit min-max, one luma atlas, kvazaar intra veryfast, per-CTU QP "
        "per scale region; bpp = feature bits per image pixel; mAP vs pseudo-GT (uncut model)",
        "images": [r["name"] for r in done],
        "loss_rate": {
            "cauchy": {**cm.to_json(), **cs.to_json()},
            "quadratic": {**qm.to_json(), **qs.to_json()},
            "metric": "loss = 100 - mAP@[.5:.95] (%)",
        },
        "uniform": [
            {"qp": q, "bpp": round(u[0], 5), "map50_95": round(u[1], 3), "map50": round(u[2], 3)}
            for q, u in zip(fc.FCM_QPS, uni, strict=True)
        ],
        "mfiba": [
            {
                "budget_of_qp": q,
                "bpp": round(m[0], 5),
                "map50_95": round(m[1], 3),
                "map50": round(m[2], 3),
                "qps": [res[r["name"]]["points"][i]["qps"] for r in done],
            }
            for i, (q, m) in enumerate(zip(fc.FCM_QPS, mf, strict=True))
        ],
        "bd_rate_mfiba_vs_uniform": bd,
        "mean_weights": w_mean,
        "per_image": per_image,
        "line_search": "not run",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "fcm.json", json.dumps(doc, indent=1) + "\n")
    fcm_plot(doc, out / "fcm_rd.png", cm, qm)
    return doc, cm, cs, qs
