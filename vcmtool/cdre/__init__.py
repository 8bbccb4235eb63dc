"""CDRE side stream: compression-distortion representation sent beside the video (the CDRE paper).

Importing this package imports nothing heavy; :mod:`vcmtool.cdre.model` and
:mod:`vcmtool.cdre.train` need torch, :mod:`vcmtool.cdre.sidestream` needs onnxruntime.
"""
