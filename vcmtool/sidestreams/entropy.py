"""Context-adaptive binary arithmetic coding of (C, H, W) 0/1 maps: the CDRE "ctx" coder.

Order and model: channel by channel, row by row. Every symbol gets a probability from adaptive
counts (n0, n1) of its context; encoder and decoder update the counts after each row from that
row's symbols, so a row's contexts and probabilities use only what the decoder already holds
(rows above, earlier channels, the previous frame). Each row is then one vectorised call of
constriction's range coder (Bernoulli family, one probability per symbol). Counts start afresh
in every frame: a payload depends on at most one earlier frame.

Contexts (each channel has its own counts, since the channels' statistics differ widely):

- temporal, when the previous display frame's bits are given: that frame's bit at the same
  place and how many of its 4 neighbours there are 1 (10 contexts per channel). The counts start
  from a prior of weight 12 and mean 0.05 + 0.9 * (0.8 * bit + 0.2 * neighbours / 4): the model's
  bits persist in time and are smooth in space, so the first rows are not coded blind.
- intra, without a previous frame: the bit above, the bits above-left + above-right (0..2) and
  the previous channel's bit at the same place (12 contexts per channel), prior (0.4, 0.4).

Measured on the shipped encoder's bits of 32 frames of 720p bigbuckbunny (kvazaar QP 37,
6 x 23 x 40 = 5,520 bits a frame), ideal adaptive code length per frame after frame 0:
previous bit alone, flat prior: 2,089; with the persistence prior: 1,944; + previous frame's
neighbours (the recipe): 1,846. Not kept: the flip of the row above or of earlier channels at the
same place (+0 to +30 bits: more contexts to learn than they tell), the current row's left
neighbour (-0.5%, but it forces one coder call per symbol instead of per row). The static
conditional entropy of these bits given the previous bit is 1,956 bits a frame, given it and its
neighbours 1,847: about 10% of the bits of three channels flip from frame to frame, and no
lossless coder gets far below that. Intra frames: 3,866 bits (zlib: ~4,500).
Payloads (benchmarks/bench_cdre.py, headers included, same bits): 1,994 bits a frame over the 32
frames with the previous frame (1,930 after the first), 0.44 of the zlib payload; 1,417 over the
first 8 frames, whose bits change less (0.31). Speed, 2-core dev VM, one 720p frame: encode
1.3-1.5 ms, decode 1.5-2.0 ms with the previous frame (decode includes the re-encoding check);
2.5-2.7 ms each without it (its contexts are computed row by row).

Body: the range coder's uint32 words as big-endian bytes, trailing zero bytes dropped (the
decoder reads zeros past the end). The shape travels outside (the payload header). The decoder
re-encodes what it decoded with the same probabilities and requires the same bytes, so a
corrupt or truncated body raises :class:`vcmtool.errors.InputError` instead of passing wrong bits.
"""

from __future__ import annotations

import constriction
import numpy as np

from vcmtool.errors import InputError

# A range coder (FIFO) rather than ANS (LIFO): the decoder decodes rows in the order the
# contexts need them, and the encoder can still code the whole frame in one call.
_FAMILY = constriction.stream.model.Bernoulli(perfect=False)

# Hostile shapes must not allocate or loop without bound: far above any CDRE map (8K video at
# stride 32 is 6 x 135 x 240 = 194,400 bits in 810 rows).
MAX_SYMBOLS = 1 << 22
MAX_ROWS = 1 << 16

_TEMPORAL_CONTEXTS = 10  # previous bit (2) x previous 4-neighbours that are 1 (5)
_INTRA_CONTEXTS = 12  # bit above (2) x above-left + above-right (3) x previous channel (2)
_PRIOR_WEIGHT = 12.0


def _temporal_prior() -> np.ndarray:
    k = np.arange(_TEMPORAL_CONTEXTS)
    mean = 0.05 + 0.9 * (0.8 * (k // 5) + 0.2 * (k % 5) / 4)
    return mean


class _Model:
    """Contexts and adaptive counts; the encoder and the decoder run the same instance code."""

    def __init__(self, shape: tuple[int, int, int], prev: np.ndarray | None) -> None:
        c, h, w = shape
        self.w = w
        self.zeros = np.zeros(w, np.intp)
        if prev is not None:
            # Temporal contexts depend on the previous frame only: one map for the whole frame.
            p = prev.astype(np.intp)
            pp = np.pad(p, ((0, 0), (1, 1), (1, 1)))
            neigh = pp[:, :-2, 1:-1] + pp[:, 2:, 1:-1] + pp[:, 1:-1, :-2] + pp[:, 1:-1, 2:]
            chan = np.arange(c, dtype=np.intp)[:, None, None] * _TEMPORAL_CONTEXTS
            self.ctx: np.ndarray | None = chan + p * 5 + neigh
            mean = np.tile(_temporal_prior(), c)
            self.n1 = _PRIOR_WEIGHT * mean
            self.n = np.full(c * _TEMPORAL_CONTEXTS, _PRIOR_WEIGHT)
        else:
            self.ctx = None
            self.n1 = np.full(c * _INTRA_CONTEXTS, 0.4)
            self.n = np.full(c * _INTRA_CONTEXTS, 0.8)
        self.k = len(self.n)

    def keys(self, cur: np.ndarray, c: int, y: int) -> np.ndarray:
        if self.ctx is not None:
            return self.ctx[c, y]
        if y:
            up = cur[c, y - 1].astype(np.intp)
            diag = np.zeros(self.w, np.intp)
            diag[1:] += up[:-1]
            diag[:-1] += up[1:]
        else:
            up = diag = self.zeros
        ch = cur[c - 1, y].astype(np.intp) if c else self.zeros
        return c * _INTRA_CONTEXTS + (up * 3 + diag) * 2 + ch

    def probs(self, keys: np.ndarray) -> np.ndarray:
        return self.n1[keys] / self.n[keys]

    def update(self, keys: np.ndarray, row: np.ndarray) -> None:
        self.n += np.bincount(keys, minlength=self.k)
        self.n1 += np.bincount(keys, weights=row, minlength=self.k)


def _check_prev(prev: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if prev is None:
        return None
    p = np.asarray(prev)
    if p.shape != shape:
        raise ValueError(f"previous frame's bits have shape {p.shape}, this frame's {shape}")
    return p.astype(np.uint8) & 1


def _range_code(symbols: np.ndarray, probs: np.ndarray) -> bytes:
    enc = constriction.stream.queue.RangeEncoder()
    if symbols.size:
        enc.encode(symbols.astype(np.int32), _FAMILY, probs)
    return enc.get_compressed().astype(">u4").tobytes().rstrip(b"\0")


def encode_map(bits: np.ndarray, prev: np.ndarray | None = None) -> bytes:
    """Body for a (C, H, W) 0/1 array, with ``prev`` (same shape) as temporal context or None."""
    a = np.asarray(bits)
    if a.ndim != 3:
        raise ValueError(f"the ctx coder codes (channels, rows, cols) maps, got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError("the ctx coder codes 0/1 maps only")
    a = a.astype(np.uint8)
    model = _Model(a.shape, _check_prev(prev, a.shape))
    probs = np.empty(a.shape, np.float64)
    for c in range(a.shape[0]):
        for y in range(a.shape[1]):
            keys = model.keys(a, c, y)
            probs[c, y] = model.probs(keys)
            model.update(keys, a[c, y])
    return _range_code(a.ravel(), probs.ravel())


def decode_map(data: bytes, shape: tuple[int, int, int], prev: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`encode_map`: uint8 0/1 array of ``shape``; InputError on a bad body."""
    c, h, w = shape
    if c * h * w > MAX_SYMBOLS or c * h > MAX_ROWS:
        raise InputError(f"ctx-coded map of shape {tuple(shape)} exceeds the decoder's limits")
    if prev is not None and np.shape(prev) != tuple(shape):
        raise InputError(f"ctx-coded map of shape {tuple(shape)}: context of shape {np.shape(prev)}")
    data = bytes(data)
    if data.endswith(b"\0"):
        raise InputError("ctx-coded map: trailing zero bytes (not a body this coder writes)")
    model = _Model((c, h, w), None if prev is None else np.asarray(prev).astype(np.uint8) & 1)
    out = np.zeros((c, h, w), np.uint8)
    probs = np.empty((c, h, w), np.float64)
    padded = data + b"\0" * (-len(data) % 4)
    try:
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, ">u4").astype(np.uint32))
        for ci in range(c):
            for y in range(h):
                keys = model.keys(out, ci, y)
                p = model.probs(keys)
                row = dec.decode(_FAMILY, p)
                out[ci, y] = row
                probs[ci, y] = p
                model.update(keys, row)
    except InputError:
        raise
    except Exception as e:  # constriction raises its own types on impossible data
        raise InputError(f"ctx-coded map: corrupt body ({e})") from None
    # A range decoder turns any bytes into some bits; only the canonical body of those bits is valid.
    if _range_code(out.ravel(), probs.ravel()) != data:
        raise InputError("ctx-coded map: corrupt or truncated body")
    return out


__all__ = ["MAX_ROWS", "MAX_SYMBOLS", "decode_map", "encode_map"]
