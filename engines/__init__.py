"""burnscope.engines: BiomedCLIP model building/loading, ONNX export, quantization and the
inference backends (ONNX Runtime, PyTorch, TensorRT) behind one interface."""
