"""The PyTorch backend: .pt2, TorchScript, state_dicts, pickles and entry points (needs the torch extra)."""
