"""Paths the tests share: the repository root (samples, scripts, README)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
