"""Malformed inputs found by an adversarial pass, through the real CLI: each is refused with one
line naming the file (exit 1 for a bad file, 2 for options that contradict it), no traceback,
and no output file. The QP-map cases use the 256x128 bikes crop (a 4x2 grid at ctu 64)."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from vcmtool.io import open_video
from vcmtool.qpmap.qpm import read_qpm

FAST = ("--preset", "ultrafast")
GOOD = np.array([[22, 22, 42, 42], [22, 22, 42, 42]])


def assert_refused(r, code: int, msg: str, *outputs: Path) -> str:
    err = r.stderr.decode().strip()
    assert r.returncode == code, err
    assert msg in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("vcmtool: error: ")
    for out in outputs:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if ".part" in p.name]
    return err


class _Unpickled:
    """Unpickling this creates ``path``: proof that a loader ran pickle on the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _npy(d: Path, name: str, arr, **kw) -> Path:
    np.save(d / name, arr, **kw)
    return d / name


def _bytes(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


def _qpm(d: Path, name: str, ctu: int, frames: np.ndarray) -> Path:
    # Raw bytes: write_qpm range-checks, and these files are meant to be bad.
    f, gh, gw = frames.shape
    return _bytes(d, name, b"QPM1" + struct.pack("<HHHI", ctu, gw, gh, f) + frames.astype(np.uint8).tobytes())


def _with(arr: np.ndarray, idx: tuple, value) -> np.ndarray:
    a = np.array(arr, dtype=np.float64)
    a[idx] = value
    return a


GOOD2 = np.stack([GOOD, GOOD])
TWO_FRAMES_CSV = b"22,22,42,42\n22,22,42,42\n\n22,nan,42,42\n22,22,42,42\n"
NOT_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


@pytest.mark.parametrize(
    "make, code, msg",
    [
        # NaN / inf: never a QP (np.rint(nan).astype(int16) used to give a bogus one)
        (lambda d: _npy(d, "nan.npy", _with(GOOD, (0, 1), np.nan)), 1, "nan.npy: value nan at row 0, col 1"),
        (
            lambda d: _npy(d, "inf.npy", _with(GOOD2, (1, 1, 3), np.inf)),
            1,
            "inf.npy: value inf at frame 1, row 1, col 3",
        ),
        (lambda d: _bytes(d, "nan.csv", TWO_FRAMES_CSV), 1, "nan.csv: value nan at line 4, column 2"),
        (
            lambda d: _bytes(d, "inf.csv", b"22,22,42,-inf\n22,22,42,42\n"),
            1,
            "value -inf at line 1, column 4",
        ),
        # fractional QPs are refused, not rounded (see load_map_file)
        (
            lambda d: _npy(d, "frac.npy", _with(GOOD, (1, 2), 31.5)),
            1,
            "value 31.5 at row 1, col 2 is not an integer",
        ),
        # out of range: refused, never clamped or wrapped (-22 must not become 234)
        (
            lambda d: _npy(d, "neg.npy", -GOOD.astype(np.int8)),
            1,
            "value -22 at row 0, col 0 is outside 0..63",
        ),
        (
            lambda d: _bytes(d, "hi.csv", b"22,22,42,42\n22,22,42,64\n"),
            1,
            "value 64 at line 2, column 4 is outside 0..63",
        ),
        (
            lambda d: _qpm(d, "hi.qpm", 64, np.stack([GOOD, GOOD + 30])),
            1,
            "hi.qpm: QP 72 above 63 in frame 1",
        ),
        # empty and wrongly shaped arrays
        (lambda d: _npy(d, "empty.npy", np.array([])), 1, "got shape (0,)"),
        (lambda d: _npy(d, "empty3.npy", np.zeros((0, 2, 4))), 1, "holds no QPs (shape (0, 2, 4))"),
        (lambda d: _bytes(d, "zero.npy", b""), 1, "zero.npy: not a .npy file"),
        (lambda d: _npy(d, "flat.npy", GOOD.ravel()), 1, "got shape (8,)"),
        (lambda d: _npy(d, "four.npy", GOOD[None, None]), 1, "got shape (1, 1, 2, 4)"),
        (
            lambda d: _bytes(d, "cut.npy", _npy(d, "full.npy", GOOD).read_bytes()[:-5]),
            1,
            "cut.npy: not a readable numeric .npy array",
        ),
        # dtypes that are not QPs
        (lambda d: _npy(d, "cplx.npy", GOOD + 1j), 1, "must hold integers or floats, not complex128"),
        (lambda d: _npy(d, "bool.npy", GOOD > 30), 1, "not bool"),
        # not text / not numbers
        (
            lambda d: _bytes(
                d, "rand.csv", np.random.default_rng(1).integers(128, 256, 300, np.uint8).tobytes()
            ),
            1,
            "rand.csv: not a text CSV file",
        ),
        (lambda d: _bytes(d, "img.csv", NOT_PNG), 1, "img.csv: not a text CSV file"),
        (
            lambda d: _bytes(d, "long.csv", b"1" * 200_000 + b"\n"),
            1,
            "long.csv:1: column 1 is 200000 characters long",
        ),
        (lambda d: _bytes(d, "empty.csv", b""), 1, "empty.csv: QP map holds no QPs"),
        # a .qpm's own CTU size must agree with --ctu (it used to override it silently)
        (
            lambda d: _qpm(d, "c32.qpm", 32, np.full((1, 4, 8), 30)),
            2,
            "c32.qpm: its maps are on a 32x32 CTU grid",
        ),
    ],
)
def test_bad_qp_map_file(tmp_path, bikes_y4m, make, code, msg):
    maps = make(tmp_path)
    out = tmp_path / "out.hevc"
    r = run_cli("encode", str(bikes_y4m), "--qpmap", f"file:{maps}", "-o", str(out), *FAST)
    assert_refused(r, code, msg, out)


def test_pickled_npy_is_never_unpickled(tmp_path, bikes_y4m):
    marker = tmp_path / "unpickled"
    objs = np.empty((2, 4), dtype=object)
    objs[...] = _Unpickled(marker)
    maps = _npy(tmp_path, "obj.npy", objs, allow_pickle=True)
    assert not marker.exists()
    pickled = _bytes(tmp_path, "pickle.npy", pickle.dumps(objs))  # a bare pickle stream
    for m, msg in (
        (maps, "obj.npy: not a readable numeric .npy array"),
        (pickled, "pickle.npy: not a .npy file"),
    ):
        out = tmp_path / "out.hevc"
        r = run_cli("encode", str(bikes_y4m), "--qpmap", f"file:{m}", "-o", str(out), *FAST)
        assert_refused(r, 1, msg, out)
    assert not marker.exists()


def test_integral_floats_and_spreadsheet_csv_are_accepted(tmp_path, bikes_y4m):
    """The other side of the refusals: float QPs that are integers (float noise included) and a
    CSV with a byte-order mark code as the integers they hold."""
    np.save(tmp_path / "f.npy", GOOD.astype(np.float64) - 1e-12)
    (tmp_path / "bom.csv").write_bytes(
        b"\xef\xbb\xbf" + b"".join((",".join(map(str, row)) + "\r\n").encode() for row in GOOD)
    )
    for name in ("f.npy", "bom.csv"):
        out = tmp_path / f"{name}.qpm"
        r = run_cli(
            "qpmap", str(bikes_y4m), "--frames", "1", "--qpmap", f"file:{tmp_path / name}", "-o", str(out)
        )
        assert r.returncode == 0, r.stderr
        assert np.array_equal(read_qpm(out).data[0], GOOD)


def _frames10(src: Path) -> list:
    return list(open_video(str(src)).frames())


def _raw(path: Path, frames) -> Path:
    with open(path, "wb") as f:
        for fr in frames:
            f.write(fr.to_bytes())
    return path


def test_10bit_raw_sample_above_1023(tmp_path, bikes_y4m_10bit):
    frames = _frames10(bikes_y4m_10bit)
    frames[3].y[5, 7] = 4095
    src = _raw(tmp_path / "x.yuv", frames)
    raw = ("--size", "256x128", "--pix-fmt", "yuv420p10le")
    out = tmp_path / "out.hevc"
    r = run_cli("encode", str(src), *raw, "-o", str(out), *FAST)
    assert_refused(
        r,
        1,
        f"sample value 4095 above 1023 in frame 3 of {src}: not 10-bit little-endian; check --pix-fmt",
        out,
    )
    # the same data through stdin and through the map-only command
    r = run_cli("encode", "-", *raw, "-o", str(out), *FAST, stdin=src.read_bytes())
    assert_refused(r, 1, "in frame 3 of <stdin>", out)
    qpm = tmp_path / "m.qpm"
    r = run_cli("qpmap", str(src), *raw, "--qpmap", "roi", "-o", str(qpm))
    assert_refused(r, 1, "in frame 3 of", qpm)


def test_8bit_raw_read_as_10bit(tmp_path, bikes_yuv):
    """8-bit bytes paired into 16-bit words: PSNR of -30 dB before the range check."""
    out = tmp_path / "out.hevc"
    r = run_cli(
        "encode", str(bikes_yuv), "--size", "256x128", "--pix-fmt", "yuv420p10le", "-o", str(out), *FAST
    )
    assert_refused(r, 1, "above 1023 in frame 0 of", out)


def test_10bit_y4m_sample_above_1023(tmp_path, bikes_y4m_10bit):
    data = bytearray(bikes_y4m_10bit.read_bytes())
    header = data.index(b"\n") + 1
    frame = 6 + 256 * 128 * 3  # b"FRAME\n" + 1.5 samples per pixel at 2 bytes
    pos = header + 2 * frame + 6 + 2 * 300  # luma sample 300 of frame 2
    data[pos : pos + 2] = struct.pack("<H", 40000)
    src = _bytes(tmp_path, "x.y4m", bytes(data))
    out = tmp_path / "out.hevc"
    r = run_cli("encode", str(src), "-o", str(out), *FAST)
    assert_refused(r, 1, f"sample value 40000 above 1023 in frame 2 of {src}", out)


def test_10bit_raw_read_as_8bit(tmp_path, bikes_y4m_10bit):
    """A 10-bit file is a whole number of 8-bit frames too (twice as many): the size check
    passes, so the first frame's high bytes are what gives the missing --pix-fmt away."""
    src = _raw(tmp_path / "ten.yuv", _frames10(bikes_y4m_10bit))
    out = tmp_path / "out.hevc"
    r = run_cli("encode", str(src), "--size", "256x128", "-o", str(out), *FAST)
    assert_refused(r, 1, "ten.yuv: frame 0 holds 10-bit little-endian samples", out)
    assert "--pix-fmt yuv420p10le" in r.stderr.decode()
    r = run_cli(
        "encode",
        str(src),
        "--size",
        "256x128",
        "--pix-fmt",
        "yuv420p10le",
        "--frames",
        "1",
        "-o",
        str(out),
        "--json",
        "--no-measure",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 1


@pytest.mark.parametrize("rate", [b"F0:1", b"F-25:1"])
def test_y4m_frame_rate_not_positive(tmp_path, bikes_y4m, rate):
    data = bikes_y4m.read_bytes()
    head, _, rest = data.partition(b"\n")
    fields = [rate if t.startswith(b"F") else t for t in head.split()]
    src = _bytes(tmp_path, "r.y4m", b" ".join(fields) + b"\n" + rest)
    out = tmp_path / "out.hevc"
    r = run_cli("encode", str(src), "-o", str(out), *FAST)
    assert_refused(r, 1, f"r.y4m: malformed Y4M header field {rate.decode()}", out)
