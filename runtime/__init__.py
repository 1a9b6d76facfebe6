"""Model runtime: ONNX Runtime sessions, provider choice, generation and classification. Knows no tasks."""
