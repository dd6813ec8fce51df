"""The ONNX backend: loading, counting, rewriting, probing and calibrating ONNX graphs (never imports torch)."""
