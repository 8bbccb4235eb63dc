"""Golden files: recorded encodes that CI re-runs to catch any change in the bytes.

``vcmtool encode --record golden.json`` appends an entry (input + its md5, options, versions,
md5 of the bitstream and of the decoded frames); ``vcmtool verify golden.json`` re-encodes each
entry into a temp folder and compares. The decoded-frame md5 tells a container/syntax-only change
(same pictures, different bytes) from a real change in what a decoder shows.

Recording forces ``threads=1``. Measured (16 frames, ffmpeg 9 backends): kvazaar, x265, x264 and
vvenc give the same bytes on every run at a fixed thread count; kvazaar, x265 and vvenc also
across thread counts, while x264 writes its options (``threads=N``) into an SEI, so its bytes
(not its decoded frames) change with the thread count.
Version strings are kept so a mismatch after an encoder upgrade is reported as such.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vcmtool.atomic import write_text_atomic
from vcmtool.batch import PATH_PREFIXES, resolve_option
from vcmtool.decode import decoded_frames
from vcmtool.errors import InputError, UsageError, VcmError
from vcmtool.pipeline import EncodeJob, run_encode
from vcmtool.provenance import md5_file

FORMAT = "vcmtool-golden"
VERSION = 1
# Options that shape the bitstream; output paths, overlays and PSNR measurement do not.
_SKIP = ("input", "output", "overlay", "qpm_out", "measure", "csv", "vmaf")
# Outputs that carry transmitted bits besides the bitstream: verify writes them into its temp
# folder (never over the recorded file) and compares their md5 too.
_SIDE_OUTPUTS = ("side_stream_out",)
# Version keys that change with every commit without touching the bytes.
_VOLATILE = ("git",)
RECORD_THREADS = 1


def decoded_md5(bitstream: Path) -> tuple[str, list[str]]:
    """md5 of all decoded planes (at 10 bits, lossless for 8- and 10-bit streams) and per frame."""
    total = hashlib.md5()
    per_frame = []
    for fr in decoded_frames(Path(bitstream), 10):
        h = hashlib.md5()
        for plane in (fr.y, fr.u, fr.v):
            h.update(plane.astype("<u2").tobytes())
        per_frame.append(h.hexdigest())
        total.update(h.digest())
    return total.hexdigest(), per_frame


def _rel(path: str, base: Path) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(p)


def entry_name(job: EncodeJob) -> str:
    """``clip.y4m kvazaar qp=30 intra_period=1``: the input, codec and every non-default option."""
    defaults = asdict(EncodeJob(input=job.input, codec=job.codec))
    diff = [
        f"{k}={v}"
        for k, v in asdict(job).items()
        if k not in (*_SKIP, *_SIDE_OUTPUTS, "codec", "threads", "qp", "map_options") and v != defaults[k]
    ]
    if job.qpmap != "none" and not job.qpmap.startswith("file:"):  # map options matter to detectors
        diff += [f"{k}={v}" for k, v in job.map_options.items() if v is not None]
    return " ".join([Path(job.input).name, job.codec, f"qp={job.qp}", *diff])


def _portable_options(job: EncodeJob, base: Path) -> dict:
    """Options with file paths (``file:maps.csv``) relative to the golden file's folder."""
    opts = {k: v for k, v in asdict(job).items() if k not in _SKIP}
    for name in _SIDE_OUTPUTS:
        if opts.get(name):
            opts[name] = Path(opts[name]).name
    for name, prefix in PATH_PREFIXES.items():
        v = opts.get(name)
        if isinstance(v, str) and v.startswith(prefix):
            opts[name] = prefix + _rel(v[len(prefix) :], base)
    return opts


def make_entry(job: EncodeJob, report: dict, golden: Path) -> dict:
    """The golden entry of a finished encode; paths relative to the golden file's folder."""
    base = golden.parent
    out = Path(report["output"])
    dec, frames = decoded_md5(out)
    return {
        "name": entry_name(job),
        "input": _rel(job.input, base),
        "input_md5": md5_file(job.input),
        "output": _rel(str(out), base),
        "options": _portable_options(job, base),
        "versions": report["versions"],
        "side_md5": {k: md5_file(getattr(job, k)) for k in _SIDE_OUTPUTS if getattr(job, k, None)},
        "bitstream_md5": md5_file(out),
        "bytes": out.stat().st_size,
        "decoded_md5": dec,
        "frame_md5": frames,
        "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def load(golden: Path) -> dict:
    try:
        doc = json.loads(Path(golden).read_text())
    except FileNotFoundError:
        raise InputError(f"{golden}: no such golden file; record one with vcmtool encode --record") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{golden}: not a golden file ({e}); re-record it") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
        raise InputError(
            f"{golden}: not a {FORMAT} file (no 'format': '{FORMAT}' with 'entries'); "
            "record one with vcmtool encode --record"
        )
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{golden}: 'version' {version!r} is not an integer; re-record it")
    if version > VERSION:
        raise InputError(
            f"{golden}: format version {doc['version']} is newer than this vcmtool "
            f"reads ({VERSION}); upgrade vcmtool"
        )
    return doc


def record(golden: Path, job: EncodeJob, report: dict) -> str:
    """Append (or replace: same input and options) an entry; read-modify-write, atomic."""
    golden = Path(golden)
    if job.input == "-":
        raise UsageError("--record needs an input file (verify re-reads it), not stdin")
    entry = make_entry(job, report, golden)
    doc = load(golden) if golden.exists() else {"format": FORMAT, "version": VERSION, "entries": []}
    same = [
        i
        for i, e in enumerate(doc["entries"])
        if e.get("input") == entry["input"] and e.get("options") == entry["options"]
    ]
    if same:
        doc["entries"][same[0]] = entry
    else:
        doc["entries"].append(entry)
    write_text_atomic(golden, json.dumps(doc, indent=1) + "\n")
    return "replaced" if same else "appended"


@dataclass
class Check:
    name: str
    status: str  # match | mismatch | input-changed | error
    bitstream: str = ""  # "same" | "differs" | ""
    decoded: str = ""
    versions: list[str] = field(default_factory=list)  # "key: old -> new"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "match"

    def to_json(self) -> dict:
        return asdict(self)


def version_diff(recorded: dict, now: dict) -> list[str]:
    keys = sorted((set(recorded) | set(now)) - set(_VOLATILE))
    return [f"{k}: {recorded.get(k)!r} -> {now.get(k)!r}" for k in keys if recorded.get(k) != now.get(k)]


def _compare(entry: dict, bitstream: Path) -> tuple[str, str, str]:
    bs = "same" if md5_file(bitstream) == entry["bitstream_md5"] else "differs"
    try:
        dec, frames = decoded_md5(bitstream)
    except VcmError as e:
        return bs, "undecodable", str(e)
    if dec == entry["decoded_md5"]:
        return bs, "same", ""
    old = entry.get("frame_md5", [])
    if len(frames) != len(old):
        return bs, "differs", f"{len(frames)} frames decoded, {len(old)} recorded"
    first = next((i for i, (a, b) in enumerate(zip(frames, old, strict=True)) if a != b), None)
    return (
        bs,
        "differs",
        ("decoded md5 differs" if first is None else f"decoded frames differ from frame {first}"),
    )


def _untrusted_options(options: dict) -> str | None:
    """Why a golden entry's options cannot be re-encoded safely (None if they can). A golden file
    may come from anywhere: it must not make verify write outside its temp folder."""
    if not isinstance(options, dict):
        return "'options' is not an object"
    named = sorted(k for k in ("output", "overlay", "qpm_out", "input", "csv") if options.get(k))
    if named:
        return f"options name output/input paths ({', '.join(named)}); re-record the entry"
    for k in _SIDE_OUTPUTS:
        v = options.get(k)
        if v and (not isinstance(v, str) or Path(v).name != v or v in (".", "..")):
            return f"{k} {v!r} must be a plain file name; re-record the entry"
    return None


def check_entry(entry: dict, base: Path, workdir: Path, reencode: bool = True) -> Check:
    """Re-encode one entry (or, with ``reencode=False``, check its recorded output file)."""
    name = str(entry.get("name", entry.get("input", "?")))
    if not isinstance(entry.get("input"), str) or not isinstance(entry.get("output"), str):
        return Check(name, "error", detail="entry needs 'input' and 'output' strings; re-record it")
    inp = base / entry["input"]
    if reencode and (why := _untrusted_options(entry.get("options"))):
        return Check(name, "error", detail=why)
    try:
        if reencode:
            if not inp.exists():
                return Check(name, "error", detail=f"input {inp} is missing")
            if md5_file(inp) != entry["input_md5"]:
                return Check(name, "input-changed", detail=f"{inp} is not the recorded input (md5 differs)")
            opts = {k: resolve_option(k, v, base) for k, v in entry["options"].items()}
            opts.update({k: str(workdir / opts[k]) for k in _SIDE_OUTPUTS if opts.get(k)})
            job = EncodeJob(
                input=str(inp), output=str(workdir / Path(entry["output"]).name), measure=False, **opts
            )
            report = run_encode(job)
            bitstream, versions = Path(report["output"]), version_diff(entry["versions"], report["versions"])
        else:
            bitstream, versions = base / entry["output"], []
            if not bitstream.exists():
                return Check(name, "error", detail=f"recorded output {bitstream} is missing")
    except VcmError as e:
        return Check(name, "error", detail=str(e))
    bs, dec, why = _compare(entry, bitstream)
    if reencode:
        side = [
            k
            for k, md5 in entry.get("side_md5", {}).items()
            if not Path(opts[k]).exists() or md5_file(opts[k]) != md5
        ]
        if side:
            bs, why = "differs", "; ".join(filter(None, [why, f"{', '.join(side)} differs"]))
    status = "match" if bs == dec == "same" else "mismatch"
    if status == "mismatch" and versions:
        why = "; ".join(filter(None, [why, "versions differ, which may explain it"]))
    return Check(name, status, bs, dec, versions, why)


def verify(golden: Path, reencode: bool = True, progress=None) -> list[Check]:
    doc = load(golden)
    if not doc["entries"]:
        raise InputError(f"{golden}: no entries to verify; record some with vcmtool encode --record")
    base = Path(golden).parent
    checks = []
    with tempfile.TemporaryDirectory(prefix="vcmtool-verify-") as tmp:
        for i, entry in enumerate(doc["entries"]):
            try:
                if not isinstance(entry, dict):
                    raise TypeError(f"entry is {type(entry).__name__}, not an object")
                checks.append(check_entry(entry, base, Path(tmp) / str(i), reencode))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                checks.append(
                    Check(
                        entry.get("name", f"entry {i}") if isinstance(entry, dict) else f"entry {i}",
                        "error",
                        detail=f"malformed entry ({e!r}); re-record it",
                    )
                )
            if progress:
                progress(1)
    return checks


__all__ = [
    "RECORD_THREADS",
    "Check",
    "check_entry",
    "decoded_md5",
    "load",
    "make_entry",
    "record",
    "verify",
    "version_diff",
]
