"""Building models: base checkpoint preparation, ONNX export with proof, quantization."""
