"""Backends: the only package that imports onnx, onnxruntime, torch or fvcore (one folder per framework)."""
