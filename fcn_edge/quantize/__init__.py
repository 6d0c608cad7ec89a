"""INT8/FP16 model making: calibration data, tensor statistics, Q/DQ and FP16 ONNX, TensorRT caches, sensitivity."""
