"""vcmtool from Python, notebook style: open a clip, look at its ROI map, encode it two ways,
compare. Run: python examples/python_api.py CLIP.y4m OUTDIR  (e.g. demo-out/bikes-30-59.y4m
after `make demo`)."""

# %% setup
import sys
from pathlib import Path

import vcmtool

clip_path = sys.argv[1] if len(sys.argv) > 1 else "demo-out/bikes-30-59.y4m"
out = Path(sys.argv[2] if len(sys.argv) > 2 else "demo-out/api")
out.mkdir(parents=True, exist_ok=True)

# %% the clip: any input the CLI reads; frames are streamed, the clip can be iterated again
clip = vcmtool.open_video(clip_path, frames=8)
print(clip.info.width, clip.info.height, clip.info.fps, clip.count(), "frames")

# %% the QP map a detector-driven encode would apply (maps.data: frames x rows x cols)
maps, stats = vcmtool.qpmaps(clip_path, frames=8, qpmap="roi", qp=32, overwrite=True, overlay=out / "roi.png")
print("roi map QPs", stats["min"], "..", stats["max"], "mean", round(stats["mean"], 2))

# %% two encodes: uniform QP and the ROI map; each returns the report `vcmtool encode --json` prints
plain = vcmtool.encode(clip_path, out / "plain.hevc", frames=8, qp=32, overwrite=True)
roi = vcmtool.encode(clip_path, out / "roi.hevc", frames=8, qp=32, qpmap="roi", overwrite=True)
for name, r in (("uniform", plain), ("roi", roi)):
    print(f"{name:8s} {r['bytes']:7d} bytes  {r['bpp']:.4f} bpp  PSNR-Y {r['psnr_y']:.2f} dB")
