"""YUV4MPEG2 (.y4m): header-driven 4:2:0 input, 8 or 10 bit, and a writer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import BinaryIO

from vcmtool.errors import InputError
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.rawyuv import check_geometry, read_exact, read_planes

MAGIC = b"YUV4MPEG2"
_CHROMA = {
    "420": "yuv420p",
    "420jpeg": "yuv420p",
    "420paldv": "yuv420p",
    "420mpeg2": "yuv420p",
    "420p10": "yuv420p10le",
}


def _read_line(f: BinaryIO, where: str, limit: int = 4096) -> bytes:
    out = bytearray()
    while len(out) < limit:
        c = f.read(1)
        if not c or c == b"\n":
            return bytes(out)
        out += c
    raise InputError(f"{where}: Y4M header line longer than {limit} bytes (corrupt Y4M)")


def parse_header(line: bytes, where: str) -> VideoInfo:
    if not line.startswith(MAGIC):
        raise InputError(f"{where}: not a Y4M file (no YUV4MPEG2 signature)")
    w = h = None
    fps = Fraction(25)
    pix = "yuv420p"
    for tok in line.split()[1:]:
        tag, val = chr(tok[0]), tok[1:].decode("ascii", "replace")
        try:
            if tag == "W":
                w = int(val)
            elif tag == "H":
                h = int(val)
            elif tag == "F":
                num, den = val.split(":")
                fps = Fraction(int(num), int(den))
                if fps <= 0:
                    raise ValueError  # F0:1 would give encoders and rates a zero frame rate
            elif tag == "C":
                if val not in _CHROMA:
                    raise InputError(
                        f"{where}: Y4M colour space C{val} unsupported; vcmtool reads 4:2:0 "
                        "8-bit or 10-bit (convert with ffmpeg -pix_fmt yuv420p)"
                    )
                pix = _CHROMA[val]
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{where}: malformed Y4M header field {tok.decode(errors='replace')}") from None
    if w is None or h is None:
        raise InputError(f"{where}: Y4M header lacks W or H")
    check_geometry(w, h, where)
    return VideoInfo(w, h, fps, pix)


class Y4MSource:
    def __init__(self, path: str, stream: BinaryIO | None = None, name: str | None = None) -> None:
        """``name``: what messages call the input (``<stdin>`` for a spooled pipe)."""
        self.path = path
        self.name = name or path
        self._stream = stream
        if stream is None:
            try:
                with open(path, "rb") as f:
                    self.info = parse_header(_read_line(f, self.name), self.name)
            except OSError as e:
                raise InputError(f"{self.name}: cannot read ({e.strerror})") from None
        else:
            self.info = parse_header(_read_line(stream, self.name), self.name)

    def frames(self) -> Iterator[Frame]:
        fb = self.info.frame_bytes
        own = self._stream is None
        f = open(self.path, "rb") if own else self._stream  # noqa: SIM115
        assert f is not None
        try:
            if own:
                _read_line(f, self.name)
            i = 0
            while True:
                hdr = _read_line(f, self.name, 1024)
                if not hdr:
                    if i == 0:
                        raise InputError(f"{self.name}: Y4M file has no frames")
                    return
                if not hdr.startswith(b"FRAME"):
                    raise InputError(f"{self.name}: frame {i}: missing FRAME marker (corrupt Y4M)")
                buf = read_exact(f, fb)
                if len(buf) < fb:
                    raise InputError(f"{self.name}: truncated frame {i}: {len(buf)} of {fb} bytes")
                yield read_planes(
                    buf, self.info, i, self.name, "its header says C420p10 (corrupt or mislabelled Y4M)"
                )
                i += 1
        finally:
            if own:
                f.close()


def header_for(info: VideoInfo) -> bytes:
    c = "420p10 XYSCSS=420P10" if info.bit_depth == 10 else "420jpeg XYSCSS=420JPEG"
    fps = Fraction(info.fps)
    return (
        f"YUV4MPEG2 W{info.width} H{info.height} F{fps.numerator}:{fps.denominator} Ip A1:1 C{c}\n"
    ).encode()


def write_y4m(f: BinaryIO, info: VideoInfo, frames: Iterable[Frame]) -> int:
    f.write(header_for(info))
    n = 0
    for fr in frames:
        f.write(b"FRAME\n")
        f.write(fr.to_bytes())
        n += 1
    return n
