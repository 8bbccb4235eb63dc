"""QP-map overlay: the most informative frame is drawn, at the picture's size."""

from __future__ import annotations

import cv2
import numpy as np

from vcmtool.io import open_video
from vcmtool.qpmap import QPMaps
from vcmtool.qpmap.overlay import most_informative_frame, write_clip_overlay


def test_overlay_picks_the_frame_whose_map_varies(bikes_y4m, tmp_path):
    data = np.full((3, 2, 4), 40, np.int16)
    data[2, 0, 0] = 22
    maps = QPMaps(data)
    assert most_informative_frame(maps) == 2
    k = write_clip_overlay(str(tmp_path / "o.png"), open_video(str(bikes_y4m)), maps, (0, 51))
    img = cv2.imread(str(tmp_path / "o.png"))
    assert k == 2 and img.shape == (128, 256, 3)
    # The low-QP cell is tinted differently from a high-QP cell.
    assert np.abs(img[40:60, 10:50].astype(int).mean((0, 1)) - img[40:60, 200:240].mean((0, 1))).sum() > 30
