"""The .qpm format and the CSV/.npy alternatives."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vcmtool.errors import InputError
from vcmtool.qpmap import QPMaps
from vcmtool.qpmap.qpm import iter_qpm, load_map_file, read_qpm, write_qpm


def test_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    maps = QPMaps(rng.integers(0, 64, (5, 3, 7)), 32)
    write_qpm(tmp_path / "m.qpm", maps)
    back = read_qpm(tmp_path / "m.qpm")
    assert back.ctu == 32 and np.array_equal(back.data, maps.data)
    raw = (tmp_path / "m.qpm").read_bytes()
    assert raw[:4] == b"QPM1" and struct.unpack("<HHHI", raw[4:14]) == (32, 7, 3, 5)


@pytest.mark.parametrize(
    "blob, msg",
    [
        (b"", "too short"),
        (b"XXXX" + struct.pack("<HHHI", 64, 2, 2, 1) + bytes(4), "not a .qpm"),
        (b"QPM1" + struct.pack("<HHHI", 64, 2, 2, 3) + bytes(4), "needs"),
        (b"QPM1" + struct.pack("<HHHI", 63, 2, 2, 1) + bytes(4), "invalid"),
        (b"QPM1" + struct.pack("<HHHI", 64, 65535, 65535, 4294967295), "needs"),
        (b"QPM1" + struct.pack("<HHHI", 64, 1, 1, 1) + bytes([200]), "above"),
    ],
)
def test_malformed(tmp_path, blob, msg):
    p = tmp_path / "bad.qpm"
    p.write_bytes(blob)
    with pytest.raises(InputError, match=msg):
        _, it = iter_qpm(p)
        list(it)


def test_csv_and_npy(tmp_path):
    (tmp_path / "m.csv").write_text("30,31\n32,33\n\n40,41\n42,43\n")
    m = load_map_file(str(tmp_path / "m.csv"))
    assert m.data.shape == (2, 2, 2) and m.data[1, 1, 1] == 43
    np.save(tmp_path / "m.npy", np.full((2, 3), 27))
    assert load_map_file(str(tmp_path / "m.npy")).data.shape == (1, 2, 3)
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(InputError, match="differ"):
        load_map_file(str(tmp_path / "r.csv"))
