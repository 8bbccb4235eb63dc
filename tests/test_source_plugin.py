"""A QP-map source plug-in owns its options.

``tests/plugins/stripes_source.py`` is one file of source code; a tiny distribution (dist-info
with one entry point, made here, never pip-installed) registers it. The real CLI then offers
``--stripes-width`` (generated from the plug-in's options dataclass), the option changes the
maps of ``encode`` and ``qpmap``, reaches ``bench``, golden files and manifests, and is checked
from its declaration everywhere. Also: the one ``NAME:ARG`` parser, ``Registry.build``, and the
checks of the built-in ``roi`` options.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vcmtool.batch import parse_manifest
from vcmtool.errors import UsageError
from vcmtool.io import open_video
from vcmtool.jobcheck import check_job
from vcmtool.pipeline import EncodeJob, map_context
from vcmtool.plugin_options import make_options, option, option_specs, parse_text
from vcmtool.qpmap.qpm import read_qpm
from vcmtool.qpmap.sources import QPMAP_SOURCES, MapContext, QPMapSource, get_source
from vcmtool.qpmap.sources.roi import RoiOptions
from vcmtool.registry import Registry, Spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "tests" / "plugins"
FAST = ("--preset", "ultrafast")
QP = 32  # stripes: QP - 6 and QP + 6
LO, HI = QP - 6, QP + 6


def _load_stripes():
    spec = importlib.util.spec_from_file_location("stripes_source", PLUGIN_DIR / "stripes_source.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stripes_source", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The registration: a dist-info whose entry point names the plug-in's class."""
    site = tmp_path_factory.mktemp("site")
    info = site / "vcm_stripes-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vcm-stripes\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""
        [vcmtool.qpmap_sources]
        stripes = stripes_source:StripesSource
    """)
    )
    return site


def _env(site: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def run_cli(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vcmtool", *args],
        capture_output=True,
        text=True,
        env=_env(site),
        cwd=cwd,
        timeout=600,
    )


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _columns(maps: np.ndarray) -> list[int]:
    """The QP of each CTU column, after checking every row and frame has the same."""
    assert (maps == maps[:1, :1]).all(axis=(0, 1)).all()
    return maps[0, 0].tolist()


# --- the plug-in through the real CLI ---------------------------------------------------------


def test_cli_generates_the_plugins_option_from_its_declaration(site):
    r = run_cli(site, "encode", "-h")
    assert r.returncode == 0, r.stderr
    assert "--stripes-width INTEGER" in r.stdout and "stripes: stripe width in CTU columns" in r.stdout
    assert "stripes (vertical QP stripes" in r.stdout  # the --qpmap list comes from the registry
    for name in ("--roi-qp-in", "--roi-qp-out", "--roi-margin", "--roi-classes", "--roi-min-score"):
        assert name in r.stdout  # the built-in source's options, generated the same way
    r = run_cli(site, "bench", "-h")
    assert r.returncode == 0 and "--stripes-width" in r.stdout and "--roi-margin" in r.stdout


def test_option_changes_the_map_and_survives_a_golden_round_trip(site, bikes_y4m, tmp_path):
    out, qpm, golden = tmp_path / "s.hevc", tmp_path / "s.qpm", tmp_path / "golden.json"
    r = run_cli(
        site,
        "encode",
        str(bikes_y4m),
        "--qpmap",
        "stripes",
        "--stripes-width",
        "2",
        "--qp",
        str(QP),
        "-o",
        str(out),
        "--qpm-out",
        str(qpm),
        "--json",
        "--record",
        str(golden),
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["qpmap"]["source"] == "stripes" and rep["qpmap"]["stripes"] == "0.1"
    assert rep["options"]["map_options"] == {"stripes_width": 2}  # only the source's own options
    assert _columns(read_qpm(qpm).data) == [LO, LO, HI, HI]  # 256 px = 4 CTU columns, 2 per stripe
    # the default (width 1) through the qpmap command: another map
    r = run_cli(
        site, "qpmap", str(bikes_y4m), "--qpmap", "stripes", "--qp", str(QP), "-o", str(tmp_path / "d.qpm")
    )
    assert r.returncode == 0, r.stderr
    assert _columns(read_qpm(tmp_path / "d.qpm").data) == [LO, HI, LO, HI]
    # the golden entry stores the flat key, and verify re-encodes it to the same bytes
    entry = json.loads(golden.read_text())["entries"][0]
    assert entry["options"]["map_options"] == {"stripes_width": 2}
    r = run_cli(site, "verify", str(golden))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "value, words",
    [("0", "--stripes-width 0: out of range (1..64)"), ("x", "--stripes-width 'x': not an integer")],
)
def test_bad_plugin_option_is_one_line_naming_it(site, bikes_y4m, tmp_path, value, words):
    r = run_cli(
        site,
        "encode",
        str(bikes_y4m),
        "--qpmap",
        "stripes",
        "--stripes-width",
        value,
        "-o",
        str(tmp_path / "x.hevc"),
    )
    assert words in _one_line_error(r)
    assert list(tmp_path.iterdir()) == []


def test_plugin_option_from_the_python_api_and_a_manifest(site, bikes_y4m, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        import vcmtool
        from vcmtool.batch import parse_manifest
        from vcmtool.errors import UsageError

        clip = {str(bikes_y4m)!r}
        maps, _ = vcmtool.qpmaps(clip, qpmap="stripes", stripes_width=2, qp={QP}, frames=1)
        out = {{"columns": maps.data[0, 0].tolist()}}
        try:
            vcmtool.qpmaps(clip, qpmap="stripes", stripes_width=65, frames=1)
        except UsageError as e:
            out["api_error"] = str(e)
        rows = parse_manifest(json.dumps({{"input": clip, "qpmap": "stripes",
                                            "map_options": {{"stripes_width": 3}}}}),
                              "m", Path("."), Path({str(tmp_path)!r}))
        out["manifest"] = rows[0].job.map_options
        try:
            parse_manifest(json.dumps({{"input": clip, "qpmap": "stripes",
                                        "map_options": {{"stripes_width": 2.5}}}}),
                           "m", Path("."), Path({str(tmp_path)!r}))
        except UsageError as e:
            out["manifest_error"] = str(e)
        json.dump(out, sys.stdout)
    """)
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(site), timeout=600
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["columns"] == [LO, LO, HI, HI]
    assert got["api_error"] == "--stripes-width 65: out of range (1..64)"
    assert got["manifest"] == {"stripes_width": 3}
    assert got["manifest_error"] == "m:1: --stripes-width 2.5: not an integer"


def test_bench_runs_the_plugin_with_its_option(site, bikes_y4m, tmp_path):
    out = tmp_path / "bench"
    r = run_cli(
        site,
        "bench",
        str(bikes_y4m),
        "-c",
        "kvazaar",
        "--qpmap",
        "none,stripes",
        "--stripes-width",
        "2",
        "--qps",
        "30,34,38,42",
        "--frames",
        "2",
        "--judges",
        "yolov3-tiny",
        "--bootstrap",
        "0",
        "-o",
        str(out),
        "--json",
        *FAST,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    stripes = [c for c in res["curves"] if c["method"] == "stripes"]
    assert sorted(c["qp"] for c in stripes) == [30, 34, 38, 42]
    assert all(c["bpp"] > 0 and c["psnr_y"] > 20 for c in stripes)
    assert [b["method"] for b in res["bd"]] == ["stripes"]
    with open(out / "curves.csv") as f:
        assert sum(row["method"] == "stripes" for row in csv.DictReader(f)) == 4
    assert "stripes" in (out / "report.md").read_text()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["map_options"] == {"stripes_width": 2}  # the plug-in's option, and only it
    points = [p for p in res["points"] if p["method"] == "stripes"]
    assert len(points) == 4 and all(p["bits"] > 0 and p["frames"] == 2 for p in points)


# --- NAME:ARG and Registry.build --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, name, arg",
    [
        ("roi", "roi", ""),
        ("file:maps.qpm", "file", "maps.qpm"),
        ("file:C:/a:b.qpm", "file", "C:/a:b.qpm"),
        (" onnx :det.onnx", "onnx", "det.onnx"),
        ("cdre:", "cdre", ""),
    ],
)
def test_parse_spec(text, name, arg):
    assert parse_spec(text) == Spec(name, arg)
    assert str(parse_spec(text)) == (f"{name}:{arg}" if arg else name)


@pytest.mark.parametrize("text", ["", ":x", "  :x", None, 3])
def test_parse_spec_refuses_an_empty_or_missing_name(text):
    with pytest.raises(UsageError, match="QP-map source") as e:
        parse_spec(text, "QP-map source")
    assert "\n" not in str(e.value)


def test_registry_build_parses_once_and_passes_arg_and_options():
    reg: Registry = Registry("widget", no_arg="<none>")
    reg.register("w")(lambda arg, **options: (arg, options))
    assert reg.build("w:a:b", size=3) == ("a:b", {"size": 3})
    assert reg.build("w") == ("<none>", {}) and reg.build(Spec("w", "z")) == ("z", {})
    with pytest.raises(UsageError, match="unknown widget 'v'; choose one of: w"):
        reg.build("v:1")
    with pytest.raises(UsageError, match="empty widget name"):
        reg.build(":1")


def test_sources_are_built_with_their_typed_options():
    src = QPMAP_SOURCES.build("roi", qp_in=20, classes=("person",))
    assert src.arg is None and src.options == RoiOptions(qp_in=20, classes=["person"])
    assert get_source("file:m.qpm").arg == "m.qpm"
    # from EncodeJob.map_options: the source takes its own flat keys, ignores the others
    src = get_source("roi", {"roi_qp_in": 22, "roi_margin": 0, "mfiba_params": "p.json"})
    assert src.options == RoiOptions(qp_in=22, margin=0.0)
    assert get_source("none", {"roi_qp_in": 22}).options is None
    with pytest.raises(UsageError, match="QP-map source roi has no option 'bogus'"):
        QPMAP_SOURCES.build("roi", bogus=1)
    with pytest.raises(UsageError, match="QP-map source none takes no options"):
        QPMAP_SOURCES.build("none", width=2)


def test_map_context_hands_the_source_its_typed_options():
    job = EncodeJob(input="x.y4m", qpmap="roi", qp=30, map_options={"roi_qp_in": 10, "roi_margin": 4})
    src = get_source(job.qpmap, job.map_options)
    ctx = map_context(job, (0, 51), src)
    assert ctx.source_options is src.options and src.opts(ctx).qps(ctx.qp) == (10, 36)
    assert src.qp_range_hint(ctx) == (10, 36)
    # a MapContext made by hand: flat keys still work (tests, notebooks)
    assert get_source("roi").opts(MapContext(qp=30, options={"roi_margin": 0})).margin == 0.0
    assert get_source("roi").opts(MapContext()) == RoiOptions()


# --- option declarations and their checks ---------------------------------------------------


def test_a_plugins_declaration_gives_its_cli_name_key_and_checks():
    mod = _load_stripes()
    (spec,) = option_specs(mod.StripesOptions, "stripes")
    assert (spec.cli, spec.key, spec.kind, spec.default, spec.span()) == (
        "--stripes-width",
        "stripes_width",
        int,
        1,
        "1..64",
    )
    assert parse_text(spec, " 7 ") == 7
    with pytest.raises(UsageError, match=r"^--stripes-width '7\.5': not an integer$"):
        parse_text(spec, "7.5")
    assert make_options(mod.StripesOptions, (spec,), {"width": 3}, "stripes").width == 3
    with pytest.raises(UsageError, match=r"^--stripes-width 0: out of range \(1\.\.64\)$"):
        make_options(mod.StripesOptions, (spec,), {"width": 0}, "stripes")
    with pytest.raises(UsageError, match="stripes has no option 'height'; its options: width"):
        make_options(mod.StripesOptions, (spec,), {"height": 3}, "stripes")


def test_a_malformed_declaration_is_one_line():
    @dataclass(frozen=True)
    class Bad:
        table: dict | None = option(None, help="not a type options take")

    class BadSource(QPMapSource):
        name = "bad"
        Options = Bad

        def process(self, clip, ctx):  # pragma: no cover - never built
            raise AssertionError

    with pytest.raises(UsageError, match="QP-map source bad: bad Options: .*int, float, str, bool or list"):
        BadSource.option_specs()
    with pytest.raises(TypeError, match="mutable default"):
        option([], help="a list default")


@pytest.mark.parametrize(
    "map_options, words",
    [
        ({"roi_qp_in": 70}, "--roi-qp-in 70: out of range (0..63)"),
        ({"roi_qp_out": "30"}, "--roi-qp-out '30': not an integer"),
        ({"roi_margin": -1}, "--roi-margin -1: use a finite number in 0..4096"),
        ({"roi_margin": math.inf}, "--roi-margin inf: use a finite number in 0..4096"),
        ({"roi_min_score": True}, "--roi-min-score True: use a finite number in 0..1"),
        ({"roi_classes": "person"}, "--roi-classes 'person': use a list of strings"),
        ({"roi_bogus": 1}, "map_options: unknown key(s) roi_bogus; known: "),  # every source's keys follow
    ],
)
def test_source_options_are_checked_from_their_declaration(map_options, words, tmp_path):
    with pytest.raises(UsageError) as e:  # the Python API, golden files: through check_job
        check_job(EncodeJob(input="x.y4m", qpmap="roi", map_options=map_options))
    assert words in str(e.value) and "\n" not in str(e.value)
    row = json.dumps({"input": "x.y4m", "qpmap": "roi", "map_options": map_options})
    with pytest.raises(UsageError, match="^m:1: ") as e:  # a manifest row: the same words
        parse_manifest(row, "m", tmp_path, tmp_path / "out")
    assert words in str(e.value)


def test_existing_golden_entries_and_roi_keys_stay_valid():
    doc = json.loads((ROOT / "examples" / "ci" / "golden.json").read_text())
    for entry in doc["entries"]:  # roi_* keys with qpmap none, as the CLI used to record them
        opts = entry["options"]
        assert set(opts["map_options"]) == {
            "roi_qp_in",
            "roi_qp_out",
            "roi_margin",
            "roi_min_score",
            "roi_classes",
        }
        check_job(EncodeJob(input="clip.y4m", **opts))
    ok = {
        "roi_qp_in": 24,
        "roi_qp_out": None,
        "roi_margin": 8,
        "roi_min_score": 0.5,
        "roi_classes": ["person"],
        "target_tolerance": 0.1,
    }
    check_job(EncodeJob(input="x.y4m", qpmap="roi", map_options=dict(ok)))


# --- the shared per-frame loop ----------------------------------------------------------------


def test_every_frame_predicts_every_nth_frame_and_counts(bikes_y4m):
    class Counting(QPMapSource):
        name = "counting"
        streams = True

        def process(self, clip, ctx):  # pragma: no cover - streamed
            raise AssertionError

        def stream(self, clip, ctx):
            return self.every_frame(clip, ctx, lambda fr: np.full((2, 4), fr.index, np.int16))

    clip = open_video(str(bikes_y4m), skip=1, frames=7)
    src = Counting()
    maps = list(src.stream(clip, MapContext(map_interval=3)))
    assert [int(m[0, 0]) for m in maps] == [0, 0, 0, 3, 3, 3, 6]  # 0-based after --skip
    assert src.predicted == 3 and src.predict_s > 0
    gen = src.stream(clip, MapContext(map_interval=1))
    next(gen), next(gen)
    gen.close()  # a consumer that stops early: the counts so far stay
    assert src.predicted == 2


class _TwoStage(QPMapSource):
    """A source whose prediction has a first stage (``ahead``) that records its thread."""

    name = "two-stage"
    streams = True

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.fail_at = fail_at

    def process(self, clip, ctx):  # pragma: no cover - streamed
        raise AssertionError

    def stream(self, clip, ctx):
        def ahead(fr):
            self.threads.append(threading.current_thread().name)
            if fr.index == self.fail_at:
                raise UsageError(f"frame {fr.index}: bad frame")
            return int(fr.y.astype(np.int64).sum() % 97), fr.index

        def predict(early):
            checksum, index = early
            return np.full((2, 4), checksum + 100 * index, np.int16)

        return self.every_frame(clip, ctx, predict, ahead=ahead)


def test_every_frame_runs_the_first_stage_ahead_in_a_thread_under_a_fixed_interval(bikes_y4m):
    clip = open_video(str(bikes_y4m), frames=6)
    inline, staged = _TwoStage(), _TwoStage()
    adaptive = list(inline.stream(clip, MapContext(map_interval="auto:1")))  # every frame, in turn
    fixed = list(staged.stream(clip, MapContext(map_interval=1)))
    assert len(fixed) == 6 and all(np.array_equal(a, b) for a, b in zip(adaptive, fixed, strict=True))
    assert set(inline.threads) == {threading.current_thread().name}
    assert set(staged.threads) == {"vcmtool-map-ahead"} and staged.predicted == 6
    every2 = _TwoStage()
    maps = list(every2.stream(clip, MapContext(map_interval=2)))
    assert [int(m[0, 0]) // 100 for m in maps] == [0, 0, 2, 2, 4, 4] and len(every2.threads) == 3


def test_every_frame_first_stage_errors_reach_the_consumer_and_close_stops_the_thread(bikes_y4m):
    clip = open_video(str(bikes_y4m), frames=8)
    src = _TwoStage(fail_at=3)
    with pytest.raises(UsageError, match="frame 3: bad frame"):
        list(src.stream(clip, MapContext(map_interval=1)))
    gen = _TwoStage().stream(clip, MapContext(map_interval=1))
    next(gen)
    gen.close()  # the consumer stops early: the first stage's thread ends with it
    assert not any(t.name == "vcmtool-map-ahead" for t in threading.enumerate())
