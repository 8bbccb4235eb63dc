"""``dets:FILE``: the ``roi`` map built from detections you already have, so your own detector
drives the encoder.

The options, the rasterisation and the QP range are ``roi``'s (:class:`RoiOptions`,
:func:`boxes_to_map`): ``--roi-qp-in`` inside boxes grown by ``--roi-margin`` pixels,
``--roi-qp-out`` everywhere else, ``--roi-min-score``, ``--roi-classes``. Its detections cost
nothing, so under ``--map-interval 1`` (the default) and ``auto`` every frame's own detections
make its map; ``--map-interval N`` reads every Nth encoded frame's detections and moves those boxes
over the N-1 frames after it, as ``roi`` does (:mod:`vcmtool.qpmap.propagate`). So ``dets:``
of ``vcmtool detect --json``'s output gives the very maps ``roi`` gives with
``--map-interval 1`` (and with any fixed N).

Two formats, told apart by the file's first character:

1. ``[`` - COCO detection results, one JSON list::

       [{"image_id": 0, "category_id": 1, "bbox": [x, y, w, h], "score": 0.9}, ...]

   ``image_id`` is the frame number (see below); ``bbox`` is COCO's top-left corner, width and
   height in pixels; ``score`` defaults to 1; ``category_id`` is COCO's (1 = person ... 90 =
   toothbrush) and optional; other keys are ignored.

2. ``{`` - JSON lines, one object per line for the frames that have detections::

       {"frame": 0, "boxes": [[x0, y0, x1, y1, score, class], ...]}

   corners in pixels; ``score`` and ``class`` may be left off (rows of 4 or 5 numbers; score 1).
   ``class`` is a COCO-80 class index (0 = person ... 79 = toothbrush, the task model's order,
   the ``class_id`` ``vcmtool detect --json`` prints) or a class name. ``vcmtool detect --json``
   lines (``{"frame": i, "detections": [{"box": [x0, y0, x1, y1], "score": s, "class_id": c,
   "class": name}, ...]}``) are read as they are. A frame may appear on several lines.

Frame numbers (``image_id`` / ``frame``) are 0-based indices into the input as a whole, counted
*before* ``--skip``: with ``--skip 30`` the first encoded frame takes the detections of frame 30,
so one detections file serves any ``--skip``/``--frames`` window of its clip. ``vcmtool detect``
numbers frames the same way, so its ``--json`` output is a ``dets:`` file for any window.
Frames with no detections (none listed, or none left by the score and class filters) are all
background QP. Detections for frames past the end of the input are ignored with a note, and a
file none of whose detections fall on an encoded frame is noted too (an off-by-one or skipped
numbering, most likely).

``--roi-classes`` takes class names and numbers. A name matches detections of that class: names
given in the file, COCO ``category_id`` through COCO's 80-class ids, and numeric JSON-lines
classes as COCO-80 indices, named with the class list the default task model ships; a name none
of these knows is refused as a typo. A number matches the file's own ids (``category_id`` in
COCO results, ``class`` / ``class_id`` in JSON lines), for detectors with other classes.

Refused with a one-line error naming the file and line: malformed JSON, a missing or negative
frame number, NaN or infinite coordinates or scores, negative box sizes (``w``/``h`` < 0,
``x1 < x0``, ``y1 < y0``). Boxes reaching outside the frame are clipped to it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool.errors import InputError, ModelError, UsageError
from vcmtool.io.open import Clip
from vcmtool.qpmap.propagate import Keyframe
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext
from vcmtool.qpmap.sources.roi import RoiOptions, RoiSource, boxes_to_map

log = logging.getLogger(__name__)

# COCO category id of each of the 80 classes, in the order of the task model's names list.
COCO80_TO_91 = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)
COCO91_TO_80 = {c: i for i, c in enumerate(COCO80_TO_91)}


@functools.cache
def coco80_names() -> tuple[str, ...]:
    """The 80 COCO class names in the order the default task model (YOLOv3-tiny) ships them."""
    from vcmtool.tasks.darknet import default_files, read_names

    return tuple(read_names(default_files().names))


def _names_or_none() -> tuple[str, ...] | None:
    """:func:`coco80_names`, or None where the task model's files are not installed (then only
    names written in the detections file can be matched)."""
    try:
        return coco80_names()
    except ModelError:
        return None


@dataclass
class _Frame:
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    ids: list[int | None] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)

    def add(
        self, box: tuple[float, float, float, float], score: float, cid: int | None, name: str | None
    ) -> None:
        self.boxes.append(box)
        self.scores.append(score)
        self.ids.append(cid)
        self.names.append(name)


class _Where:
    """``path:line`` for error messages."""

    def __init__(self, path: str, line: int) -> None:
        self.path, self.line = path, line

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _number(v: object, what: str, where: _Where) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(f"{where}: {what} must be a number, not {json.dumps(v)[:40]}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise InputError(f"{where}: {what} is {v}; NaN and infinite values are refused")
    return f


def _frame_number(v: object, key: str, where: _Where) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{where}: {key!r} must be a 0-based frame number, not {json.dumps(v)[:40]}")
    if v < 0:
        raise InputError(f"{where}: {key!r} is {v}; frame numbers start at 0")
    return v


def _class(v: object, what: str, where: _Where) -> tuple[int | None, str | None]:
    if v is None:
        return None, None
    if isinstance(v, str):
        return None, v
    if isinstance(v, int) and not isinstance(v, bool):
        return v, None
    raise InputError(f"{where}: {what} must be a class number or name, not {json.dumps(v)[:40]}")


def _corners(vals: object, where: _Where, what: str = "box") -> tuple[float, float, float, float]:
    if not isinstance(vals, list) or len(vals) != 4:
        raise InputError(f"{where}: {what} must be [x0, y0, x1, y1], not {json.dumps(vals)[:60]}")
    x0, y0, x1, y1 = (_number(v, f"{what} coordinate", where) for v in vals)
    if x1 < x0 or y1 < y0:
        raise InputError(
            f"{where}: {what} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] has a negative size "
            "(corners are x0, y0, x1, y1 with x1 >= x0, y1 >= y0)"
        )
    return x0, y0, x1, y1


def _unreadable(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return (str(e).splitlines() or ["unreadable value"])[0]


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _json_list(text: str, path: str) -> Iterator[tuple[int, object]]:
    """(line, element) for each element of the JSON list ``text``, with JSON errors as one line."""
    dec = json.JSONDecoder()
    line, at = 1, 0

    def line_of(i: int) -> int:
        nonlocal line, at
        line += text.count("\n", at, i)
        at = i
        return line

    def bad(i: int, msg: str) -> InputError:
        return InputError(f"{path}:{line_of(i)}: malformed JSON ({msg})")

    i = _skip_ws(text, 0) + 1  # past '['
    i = _skip_ws(text, i)
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                obj, end = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
            except (ValueError, RecursionError) as e:  # a 5000-digit number, [[[[...
                raise bad(i, _unreadable(e)) from None
            yield line_of(i), obj
            i = _skip_ws(text, end)
            if i >= len(text):
                raise bad(i, "the list is not closed with ']'")
            if text[i] == "]":
                i += 1
                break
            if text[i] != ",":
                raise bad(i, "expected ',' or ']' after a list element")
            i = _skip_ws(text, i + 1)
    i = _skip_ws(text, i)
    if i < len(text):
        raise bad(i, "extra data after the list")


@QPMAP_SOURCES.register("dets")
class DetsSource(RoiSource):
    name = "dets"
    usage = (
        "dets:FILE (your detections drive roi's map, with roi's --roi-* options: a COCO "
        "results list [{image_id, category_id, bbox: [x,y,w,h], score}] or JSON lines "
        '{"frame": i, "boxes": [[x0,y0,x1,y1,score,class], ...]}, also `vcmtool detect '
        "--json` output; frame numbers are 0-based source frames, counted before --skip)"
    )
    streams = True

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        if not arg:
            raise UsageError(
                "--qpmap dets:FILE needs a detections file (COCO results .json or JSON lines, see --help)"
            )
        self.path = arg
        self.format = ""  # "coco" or "lines"
        self.frames: dict[int, _Frame] = {}
        self._notes: list[str] = []
        self._md5 = ""
        self._codes: dict[object, int] = {}  # class name or id -> a number, for tracking
        self._load()

    # -- reading ------------------------------------------------------------------------------

    def _load(self) -> None:
        p = Path(self.path)
        if not p.exists():
            raise InputError(f"{self.path}: no such file (--qpmap dets:FILE)")
        if p.is_dir():
            raise InputError(f"{self.path}: is a directory, not a detections file")
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise InputError(f"{self.path}: cannot read ({e.strerror})") from None
        self._md5 = hashlib.md5(raw).hexdigest()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{self.path}: not UTF-8 text (byte {e.start}); detections files are JSON"
            ) from None
        start = _skip_ws(text, 0)
        if start >= len(text):
            raise InputError(f"{self.path}: file is empty (no detections at all is '[]')")
        if text[start] == "[":
            self.format = "coco"
            for line, obj in _json_list(text, self.path):
                self._coco_entry(obj, _Where(self.path, line))
        elif text[start] == "{":
            self.format = "lines"
            for n, row in enumerate(text.splitlines(), 1):
                if row.strip():
                    self._line(row, _Where(self.path, n))
        else:
            line = text.count("\n", 0, start) + 1
            raise InputError(
                f"{self.path}:{line}: not a detections file: expected a COCO "
                "results list '[' or JSON lines '{'"
            )

    def _frame(self, index: int) -> _Frame:
        fr = self.frames.get(index)
        if fr is None:
            fr = self.frames[index] = _Frame()
        return fr

    def _coco_entry(self, obj: object, where: _Where) -> None:
        if not isinstance(obj, dict):
            raise InputError(f"{where}: COCO results entries are objects with image_id and bbox")
        for key in ("image_id", "bbox"):
            if key not in obj:
                raise InputError(f"{where}: COCO results entry without {key!r}")
        index = _frame_number(obj["image_id"], "image_id", where)
        bbox = obj["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise InputError(f"{where}: bbox must be [x, y, w, h], not {json.dumps(bbox)[:60]}")
        x, y, w, h = (_number(v, "bbox value", where) for v in bbox)
        if w < 0 or h < 0:
            raise InputError(
                f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] has a negative size "
                "(COCO boxes are x, y, width, height)"
            )
        score = _number(obj.get("score", 1.0), "score", where)
        cid, name = _class(obj.get("category_id"), "category_id", where)
        self._frame(index).add((x, y, x + w, y + h), score, cid, name)

    def _line(self, row: str, where: _Where) -> None:
        try:
            obj = json.loads(row)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: malformed JSON ({e.msg}, column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise InputError(f"{where}: malformed JSON ({_unreadable(e)})") from None
        if not isinstance(obj, dict):
            raise InputError(
                f"{where}: each line must be an object like "
                '{"frame": 0, "boxes": [[x0, y0, x1, y1, score, class]]}'
            )
        if "frame" not in obj:
            raise InputError(f"{where}: line without 'frame' (the 0-based frame number)")
        index = _frame_number(obj["frame"], "frame", where)
        if "boxes" not in obj and "detections" not in obj:
            raise InputError(
                f"{where}: line without 'boxes' (a list of [x0, y0, x1, y1, score, "
                "class] rows) or 'detections' (vcmtool detect --json)"
            )
        fr = self._frame(index)
        rows = obj.get("boxes", [])
        if not isinstance(rows, list):
            raise InputError(f"{where}: 'boxes' must be a list of [x0, y0, x1, y1, score, class]")
        for r in rows:
            if not isinstance(r, list) or not 4 <= len(r) <= 6:
                raise InputError(
                    f"{where}: a box row must be [x0, y0, x1, y1] with an optional "
                    f"score and class, not {json.dumps(r)[:60]}"
                )
            box = _corners(r[:4], where)
            score = _number(r[4], "score", where) if len(r) > 4 else 1.0
            cid, name = _class(r[5], "class", where) if len(r) > 5 else (None, None)
            fr.add(box, score, cid, name)
        dets = obj.get("detections", [])
        if not isinstance(dets, list):
            raise InputError(f"{where}: 'detections' must be a list of objects with a 'box'")
        for d in dets:
            if not isinstance(d, dict) or "box" not in d:
                raise InputError(f"{where}: each detection must be an object with a 'box' [x0, y0, x1, y1]")
            box = _corners(d["box"], where)
            score = _number(d.get("score", 1.0), "score", where)
            cid, name = _class(d.get("class_id"), "class_id", where)
            cid2, name2 = _class(d.get("class"), "class", where)
            fr.add(box, score, cid if cid is not None else cid2, name2 if name2 is not None else name)

    # -- classes -------------------------------------------------------------------------------

    def _name_of(self, cid: int | None) -> str | None:
        if cid is None:
            return None
        idx = COCO91_TO_80.get(cid) if self.format == "coco" else cid
        names = _names_or_none() or ()
        return names[idx] if idx is not None and 0 <= idx < len(names) else None

    def _class_filter(self, classes: list | None) -> tuple[set[int], set[str]] | None:
        if not classes:
            return None
        ids: set[int] = set()
        names: set[str] = set()
        for c in classes:
            if isinstance(c, int) and not isinstance(c, bool):
                ids.add(c)
            elif re.fullmatch(r"\s*-?\d+\s*", str(c)):
                ids.add(int(str(c)))
            else:
                names.add(str(c).strip())
        if names:
            # like roi: the task model's class names, plus any name the file itself uses
            known = {n for fr in self.frames.values() for n in fr.names if n is not None}
            known |= set(_names_or_none() or ())
            unknown = sorted(names - known)
            if unknown:
                shown = ", ".join(sorted(known)[:12]) or "none"
                raise UsageError(
                    f"--roi-classes: unknown class name {unknown[0]!r} for "
                    f"{self.path} (known: {shown}{', ...' if len(known) > 12 else ''})"
                )
        return ids, names

    def _boxes(
        self, index: int, opts: RoiOptions, wanted: tuple[set[int], set[str]] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The kept boxes of frame ``index`` and a class number for each (equal numbers: same
        class, for tracking boxes between frames)."""
        fr = self.frames.get(index)
        if fr is None or not fr.boxes:
            return np.zeros((0, 4)), np.zeros(0, np.int64)
        keep = np.asarray(fr.scores) >= opts.min_score
        if wanted is not None:
            ids, names = wanted
            cls = [
                (i is not None and i in ids)
                or (bool(names) and (n if n is not None else self._name_of(i)) in names)
                for i, n in zip(fr.ids, fr.names, strict=True)
            ]
            keep &= np.asarray(cls, bool)
        codes = [
            self._codes.setdefault(n if n is not None else (self._name_of(i) or i), len(self._codes))
            for i, n in zip(fr.ids, fr.names, strict=True)
        ]
        return np.asarray(fr.boxes, np.float64)[keep], np.asarray(codes, np.int64)[keep]

    # -- maps ----------------------------------------------------------------------------------

    def _check_window(self, first: int, count: int, to_the_end: bool) -> None:
        self._notes = []
        if not any(fr.boxes for fr in self.frames.values()):
            return
        last = first + count - 1
        inside = [i for i, fr in self.frames.items() if first <= i <= last and fr.boxes]
        past = sorted(i for i, fr in self.frames.items() if i > last and fr.boxes)
        if past and to_the_end:
            self._notes.append(
                f"dets: {self.path} has detections for {len(past)} frame(s) past the input's "
                f"last frame {last} (frames {past[0]}..{past[-1]}); ignored"
            )
        if not inside:
            self._notes.append(
                f"dets: no detection in {self.path} falls on the encoded frames {first}..{last} "
                "(frame numbers are 0-based and count from the input's first frame, before "
                "--skip); every map is background"
            )
        for n in self._notes:
            log.warning("note: %s", n)

    def qp_range_hint(self, ctx: MapContext) -> tuple[int, int]:
        self._class_filter(self.opts(ctx).classes)  # a typo fails before encoding
        return super().qp_range_hint(ctx)

    def stream(self, clip: Clip, ctx: MapContext) -> Iterator[np.ndarray]:
        opts: RoiOptions = self.opts(ctx)
        wanted = self._class_filter(opts.classes)
        info = clip.info
        skip = int(getattr(clip, "skip", 0))
        self._check_window(skip, clip.count(), getattr(clip, "limit", None) is None)

        def render(boxes: np.ndarray) -> np.ndarray:
            return boxes_to_map(boxes, info.height, info.width, ctx.ctu, opts, ctx.qp)

        def predict(k: int) -> Keyframe:
            boxes, classes = self._boxes(skip + k, opts, wanted)
            return Keyframe(render(boxes), boxes, classes, render)

        yield from self.every_frame(clip, ctx, predict, decode=False)

    def versions(self) -> dict[str, str]:
        return {"detections_md5": self._md5}

    def notes(self) -> list[str]:
        return list(self._notes)

    def model_files(self) -> list[Path]:
        return [Path(self.path)]  # other detections, other maps: stored results must not match
