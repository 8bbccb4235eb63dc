"""Video input: raw YUV, Y4M and anything PyAV decodes, streamed frame by frame."""

from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.open import open_video

__all__ = ["Frame", "VideoInfo", "open_video"]
