#!/usr/bin/env bash
# Create a fresh virtual environment with sepconv (ONNX only: no torch needed) and analyse the bundled
# seed VGG sample: per-layer params/MACs and the ranked separable candidates.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-demo
. .venv-demo/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt .
sepconv analyze samples/vgg_cifar.onnx --format table "$@"
