"""CDRE side stream: compression-distortion representation sent beside the video (the CDRE paper).

Importing this package imports nothing heavy; :mod:`vcmtool.sidestreams.cdre_model` and
:mod:`vcmtool.lab.cdre.train` need torch, :mod:`vcmtool.sidestreams.cdre` needs onnxruntime.
"""
