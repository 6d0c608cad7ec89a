"""The compile stage: a checkpoint or ONNX model -> a verified artifact (TensorRT engine or ONNX Runtime model) + sidecar."""
