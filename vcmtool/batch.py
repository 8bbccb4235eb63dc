"""Manifests for ``vcmtool batch``: CSV or JSON lines of :class:`EncodeJob` fields -> work items.

Each row is one encode. CSV has a header of EncodeJob field names; JSON lines are one object per
line with the same keys. Blank lines and lines starting with ``#`` are skipped. Relative input
paths are resolved against the manifest's folder (the current folder for ``-``), so a manifest can
travel with its clips; relative output paths (``output``, ``qpm_out``, ``overlay``,
``side_stream_out``) against the output folder (``--outdir``). A manifest is untrusted input:
outputs must stay inside the output folder unless ``--allow-outside``, every row is checked
against the output policy (:mod:`vcmtool.outputs`) and the same option ranges and ``--param``
allow-lists as the CLI (:mod:`vcmtool.jobcheck`, ``Encoder.check_settings``), all before any
encode starts. Jobs carry absolute paths: with ``--address`` the files must be visible
at the same paths on every Ray node (a shared mount). A row without ``output`` writes
``OUTDIR/<stem>.<codec>.<hash><ext>``, the hash covering every option, so two rows never
clobber each other's bitstream.

The item key is a hash of the resolved job: re-running an edited manifest redoes exactly the
rows that changed, and a finished row whose bitstream was deleted is encoded again.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vcmtool.atomic import owner_tag, set_owner_tag, temp_glob
from vcmtool.encoders import ENCODERS, EncodeSettings
from vcmtool.errors import UsageError
from vcmtool.jobcheck import check_job
from vcmtool.outputs import check_outputs
from vcmtool.pipeline import EncodeJob, crf_base, job_inputs, job_outputs, run_encode
from vcmtool.provenance import md5_file
from vcmtool.runner import Item

_HINTS = typing.get_type_hints(EncodeJob)
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EncodeJob))
# Options that name files, and options whose value carries a file after a prefix.
_PATH_FIELDS = ("input", "output", "overlay", "qpm_out", "side_stream_out", "csv")
OUTPUT_FIELDS = ("output", "overlay", "qpm_out", "side_stream_out", "csv")
PATH_PREFIXES = {"qpmap": "file:", "task_model": "onnx:"}
# EncodeJob options added after batches existed, at their defaults: left out of the row key so
# that a batch started before them resumes without redoing finished rows
_LATER_DEFAULTS = {"scale": "1", "scale_filter": None}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line in the manifest, for messages
    job: EncodeJob

    @property
    def key(self) -> str:
        return job_key(self.job)

    def item(self, quiet: bool, tag: str = "") -> Item:
        # ``tag`` marks the row's temp files as this batch's (see state_tag); not part of the key.
        return Item(self.key, {"job": asdict(self.job), "line": self.line, "quiet": quiet, "tag": tag})


def job_key(job: EncodeJob) -> str:
    """Readable (``<stem>.<codec>.qp<qp>``) and unique (hash of every option)."""
    options = asdict(job)
    for name, default in _LATER_DEFAULTS.items():  # options added later: keys of older rows stay
        if options.get(name) == default:
            options.pop(name)
    digest = hashlib.md5(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(job.input).stem)[:40] or "item"
    return f"{stem}.{job.codec}.qp{job.qp}-{digest}"


def _coerce(name: str, value: Any, where: str) -> Any:
    """Turn a CSV string (or a JSON value) into the type EncodeJob declares for ``name``."""
    hint = _HINTS[name]
    union = typing.get_origin(hint) in (types.UnionType, typing.Union)
    args = typing.get_args(hint) if union else ()
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if union else hint
    base = typing.get_origin(base) or base
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise UsageError(f"{where}: {name} needs a value")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is dict:
            obj = json.loads(value) if isinstance(value, str) else value
            if not isinstance(obj, dict):
                raise ValueError
            return obj
        if base is str:
            if isinstance(value, dict | list | bool):
                raise ValueError
            return str(value)
    except (ValueError, TypeError):
        pass
    kind = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        dict: "a JSON object",
        str: "a string",
    }.get(base, str(base))
    raise UsageError(f"{where}: {name}={value!r} is not {kind}")


def resolve_option(name: str, value: Any, base: Path) -> Any:
    """A relative path in option ``name`` (plain or after a ``file:``-like prefix) made relative to
    ``base`` instead of the current folder."""
    if not isinstance(value, str) or not value or value == "-":
        return value
    if name in _PATH_FIELDS:
        return str(base / value) if not Path(value).is_absolute() else value
    prefix = PATH_PREFIXES.get(name)
    if prefix and value.startswith(prefix):
        rest = value[len(prefix) :]
        return prefix + (str(base / rest) if not Path(rest).is_absolute() else rest)
    return value


def _rows_of(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = [
        (i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        return
    if lines[0][1].lstrip().startswith("{"):
        for i, ln in lines:
            try:
                obj = json.loads(ln)
            except json.JSONDecodeError as e:
                raise UsageError(f"{where}:{i}: not a JSON object ({e.msg}); one object per line") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{where}:{i}: expected a JSON object, got {type(obj).__name__}")
            yield i, obj
        return
    # CSV: one physical line per row, so every message can name its line.
    header_line, header = lines[0][0], next(csv.reader([lines[0][1]]))
    header = [h.strip() for h in header]
    for i, ln in lines[1:]:
        cells = next(csv.reader([ln]))
        if len(cells) > len(header):
            raise UsageError(
                f"{where}:{i}: {len(cells)} cells but the header (line {header_line}) "
                f"has {len(header)} columns"
            )
        yield i, {h: c for h, c in zip(header, cells, strict=False) if c.strip() != ""}


def parse_manifest(text: str, where: str, base: Path, outdir: Path, allow_outside: bool = False) -> list[Row]:
    """Parse and validate a whole manifest before any work starts: a typo on line 900 must not
    surface after hours of encoding. Errors are UsageErrors naming ``where:line``."""
    rows: list[Row] = []
    for line, raw in _rows_of(text, where):
        at = f"{where}:{line}"
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise UsageError(
                f"{at}: unknown key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; use EncodeJob fields: {', '.join(FIELDS)}"
            )
        if not raw.get("input"):
            raise UsageError(f"{at}: no input (every row needs an 'input' path)")
        kw = {
            k: resolve_option(k, _coerce(k, v, at), outdir if k in OUTPUT_FIELDS else base)
            for k, v in raw.items()
        }
        job = EncodeJob(**crf_base(kw))
        if job.codec not in ENCODERS:
            raise UsageError(
                f"{at}: unknown codec {job.codec!r}; choose one of: {', '.join(ENCODERS.names())}"
            )
        try:
            check_job(job)
            ENCODERS.get(job.codec)().check_settings(
                EncodeSettings(
                    job.preset, job.intra_period, job.threads, job.allow_frame_qp, job.encoder_params
                )
            )
            if job.output is None:
                job.output = str(default_output(job, outdir))
            check_outputs(job_outputs(job, job.output), job_inputs(job), None if allow_outside else outdir)
        except UsageError as e:
            raise UsageError(f"{at}: {e}") from None
        rows.append(Row(line, job))
    if not rows:
        raise UsageError(f"{where}: the manifest has no rows")
    _check_unique(rows, where)
    return rows


def default_output(job: EncodeJob, outdir: Path) -> Path:
    ext = ENCODERS.get(job.codec).capabilities().extension
    opts = json.dumps({k: v for k, v in asdict(job).items() if k != "output"}, sort_keys=True)
    stem = Path(job.input).stem if job.input != "-" else "stdin"
    return outdir / f"{stem}.{job.codec}.{hashlib.md5(opts.encode()).hexdigest()[:8]}{ext}"


def _check_unique(rows: list[Row], where: str) -> None:
    """No two rows write one file, and no row writes a file another row reads."""
    seen_key: dict[str, int] = {}
    seen_out: dict[str, int] = {}
    reads = {str(Path(p).resolve()): r.line for r in rows for p in job_inputs(r.job) if p != "-"}
    for r in rows:
        if r.key in seen_key:
            raise UsageError(f"{where}:{r.line}: same job as line {seen_key[r.key]}; remove one")
        seen_key[r.key] = r.line
        for o in job_outputs(r.job, r.job.output):
            out = str(Path(o.path).resolve())
            if out in seen_out:
                raise UsageError(
                    f"{where}:{r.line}: writes {o.path} like line {seen_out[out]}; "
                    "give each row its own output"
                )
            if out in reads:
                raise UsageError(f"{where}:{r.line}: writes {o.path}, which line {reads[out]} reads")
            seen_out[out] = r.line


def read_manifest(
    manifest: str, outdir: Path | None = None, allow_outside: bool = False
) -> tuple[list[Row], Path]:
    """Rows of ``manifest`` (a path or ``-``) and the output folder rows default to."""
    if manifest == "-":
        text, where, base = sys.stdin.read(), "<stdin>", Path.cwd()
        outdir = outdir or Path("batch.out")
    else:
        p = Path(manifest)
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{manifest}: cannot read manifest ({e.__class__.__name__}: {e})") from None
        where, base = manifest, p.parent.resolve()
        outdir = outdir or p.with_name(p.name + ".out")
    # Absolute paths: pool and Ray workers need not share the driver's current folder.
    outdir = outdir.resolve()
    return parse_manifest(text, where, base, outdir, allow_outside), outdir


def default_state_dir(manifest: str) -> Path:
    return Path("batch.state") if manifest == "-" else Path(manifest + ".state")


def outputs_of(job: EncodeJob) -> list[Path]:
    return [Path(o.path) for o in job_outputs(job, job.output or "")]


def state_tag(state_dir: Path) -> str:
    """The owner tag of this state folder's temp files: two batches with different state folders
    writing into one output folder never clean up each other's in-flight files."""
    return hashlib.md5(str(state_dir.resolve()).encode()).hexdigest()[:10]


def _parts_of(target: Path, tag: str) -> list[Path]:
    return list(target.parent.glob(temp_glob(target, tag))) if target.parent.is_dir() else []


def prepare_state(rows: list[Row], state_dir: Path) -> None:
    """Make a resumed run honest: forget finished rows whose outputs have gone or changed, and
    remove the temp files a kill -9 of *this* batch left behind (tagged with its state folder)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in state_dir.glob(".*.part*"):
        stale.unlink(missing_ok=True)
    tag = state_tag(state_dir)
    for r in rows:
        rec = state_dir / f"{r.key}.json"
        if rec.exists() and not _outputs_intact(rec, r.job):
            rec.unlink()
        for out in outputs_of(r.job):
            for part in _parts_of(out, tag):
                part.unlink(missing_ok=True)


def _outputs_intact(record: Path, job: EncodeJob) -> bool:
    """Every output still there with the md5 the record holds (a size match is not enough: another
    writer may have replaced a file with one of the same size)."""
    try:
        report = json.loads(record.read_text())
        md5s = report["md5"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return False
    for p in outputs_of(job):
        want = md5s.get(str(p)) if isinstance(md5s, dict) else None
        if not p.is_file() or want is None or md5_file(p) != want:
            return False
    return True


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One batch per state folder: two runs would race on the same items. The kernel drops the
    lock when its holder dies, so a kill -9 never leaves the folder locked."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{state_dir}: another vcmtool batch is using this state folder; "
                "wait for it or pass --state DIR"
            ) from None
        yield


class _NotATerminal:
    """stderr as seen by tqdm(disable=None): not a terminal, so no bar; writes still go through."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def encode_item(payload: dict) -> dict:
    """The work of one row, run in a pool or Ray worker (top-level so it pickles by name)."""
    job = EncodeJob(**payload["job"])
    if payload.get("tag") and owner_tag() != payload["tag"]:
        set_owner_tag(payload["tag"])
    if not payload.get("quiet"):
        return run_encode(job)
    # Per-encode bars from several workers would scribble over the batch bar.
    with contextlib.redirect_stderr(_NotATerminal(sys.stderr)):
        return run_encode(job)


__all__ = [
    "FIELDS",
    "OUTPUT_FIELDS",
    "PATH_PREFIXES",
    "Row",
    "default_state_dir",
    "encode_item",
    "parse_manifest",
    "prepare_state",
    "read_manifest",
    "resolve_option",
    "state_lock",
    "state_tag",
]
