"""VCS training (label-free): development data, the trainer and the export of the sender (ONNX)
and the receiver (torch). Research code; nothing in the runtime imports it."""
