"""Reports built by hand for renderer tests: the seed VGG (DESIGN §6) with its candidates.

Every figure is computed here from the layer geometry with independent arithmetic (not from the loader),
so renderer tests do not depend on any loader or planner.
"""

from __future__ import annotations

from dataclasses import replace

from sepconv_cli.core.records import (
    Candidate,
    ConvSpec,
    Excluded,
    Layer,
    ModelInfo,
    Report,
    TensorInfo,
    Uncounted,
)

NO_FORMULA = "no formula"

# (block, index, Cin, Cout, spatial side)
VGG_CONVS = ((1, 1, 3, 64, 32), (1, 2, 64, 64, 32), (2, 1, 64, 128, 16), (2, 2, 128, 128, 16),
             (3, 1, 128, 256, 8), (3, 2, 256, 256, 8))
VGG_PARAMS = 1_186_378
# Keras SeparableConv2D params (one bias, on the pointwise conv), DESIGN §6
VGG_SEPARABLE_PARAMS = (283, 4_736, 8_896, 17_664, 34_176, 68_096)


def _conv_layer(block: int, index: int, cin: int, cout: int, side: int) -> Layer:
    spec = ConvSpec(in_channels=cin, out_channels=cout, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                    pads=(1, 1, 1, 1), has_bias=True)
    return Layer(name=f"/block{block}/conv{index}/Conv", op="Conv", input_shapes=((1, cin, side, side),),
                 output_shapes=((1, cout, side, side),), params=cout * cin * 9 + cout,
                 macs=cout * side * side * cin * 9, path=(f"block{block}", f"conv{index}"), conv=spec)


def _plain(name: str, op: str, shape: tuple, path: tuple[str, ...]) -> Layer:
    return Layer(name=name, op=op, input_shapes=(shape,), output_shapes=(shape,), macs=None, note=NO_FORMULA,
                 path=path)


def vgg_layers() -> tuple[Layer, ...]:
    """Conv, Relu per conv; MaxPool after each block; Flatten; Gemm 4096 -> 10. Paths name the enclosing
    scopes, as the ONNX loader records them (``/block1/conv1/Conv`` -> ``(block1, conv1)``)."""
    layers: list[Layer] = []
    for block, index, cin, cout, side in VGG_CONVS:
        layers.append(_conv_layer(block, index, cin, cout, side))
        layers.append(_plain(f"/block{block}/conv{index}/Relu", "Relu", (1, cout, side, side),
                             (f"block{block}", f"conv{index}")))
        if index == 2:
            pooled = (1, cout, side // 2, side // 2)
            layers.append(replace(_plain(f"/block{block}/pool/MaxPool", "MaxPool", pooled,
                                         (f"block{block}", "pool")),
                                  input_shapes=((1, cout, side, side),)))
    layers.append(replace(_plain("/flatten/Flatten", "Flatten", (1, 4096), ("flatten",)),
                          input_shapes=((1, 256, 4, 4),)))
    layers.append(Layer(name="/dense/Gemm", op="Gemm", input_shapes=((1, 4096),), output_shapes=((1, 10),),
                        params=4096 * 10 + 10, macs=4096 * 10, path=("dense",)))
    return tuple(layers)


def _candidate(layer: Layer, energy_t1: float | None, rank: int | None, risk: str | None) -> Candidate:
    spec = layer.conv
    assert spec is not None
    side = layer.output_shapes[0][-1]
    cin, cout = spec.in_channels, spec.out_channels

    def params_at(t: int) -> int:
        return cin * t * 9 + cout * cin * t + cout

    def macs_at(t: int) -> int:
        return cin * t * side * side * 9 + cout * side * side * cin * t

    return Candidate(name=layer.name, op="Conv", params=layer.params, macs=layer.macs,
                     params_separable=params_at(1), macs_separable=macs_at(1),
                     break_even=9 * cout / (9 + cout), max_rank=min(cout, 9), energy_t1=energy_t1, rank=rank,
                     params_at_rank=None if rank is None else params_at(rank),
                     macs_at_rank=None if rank is None else macs_at(rank),
                     energy_at_rank=None if rank is None else 0.91, risk=risk)


# (energy at T=1, energy-chosen rank, risk) per conv, as a planner would give them for trained weights
VGG_SPECTRA = ((0.93, 1, "low"), (0.55, 4, "high"), (0.71, 3, "medium"), (0.66, 3, "medium"),
               (0.58, None, "high"), (0.81, 2, "low"))


def vgg_report(with_candidates: bool = True, weights: bool = True) -> Report:
    """The seed VGG as a loader would report it; candidates as a planner would rank them (by MACs saved)."""
    layers = vgg_layers()
    model = ModelInfo(path="samples/vgg_cifar.onnx", format="onnx", file_size=4_750_123,
                      inputs=(TensorInfo("input", (1, 3, 32, 32)),), outputs=(TensorInfo("logits", (1, 10)),))
    report = Report(model=model, layers=layers, params=VGG_PARAMS, weight_bytes=(("float32", 4 * VGG_PARAMS),),
                    uncounted=(Uncounted("Relu", 6), Uncounted("MaxPool", 3), Uncounted("Flatten", 1)))
    if not with_candidates:
        return report
    convs = [layer for layer in layers if layer.conv is not None]
    cands = [_candidate(layer, *(spec if weights else (None, None, None)))
             for layer, spec in zip(convs, VGG_SPECTRA)]
    cands.sort(key=lambda c: -c.macs_saved)
    return report.with_candidates(tuple(cands), (), 0.9)


def small_report() -> Report:
    """A tiny graph with an exclusion, a non-convertible candidate and a row whose shape is unknown."""
    spec = ConvSpec(in_channels=8, out_channels=16, kernel=(3, 3), stride=(2, 2), dilation=(1, 1))
    pw = ConvSpec(in_channels=16, out_channels=16, kernel=(1, 1), stride=(1, 1), dilation=(1, 1))
    layers = (
        Layer("conv_a", "Conv", ((1, 8, 8, 8),), ((1, 16, 4, 4),), params=1152, macs=18432, conv=spec,
              weight_constant=False),
        Layer("conv_b", "Conv", ((1, 16, 4, 4),), ((1, 16, 4, 4),), params=256, macs=4096, conv=pw),
        Layer("mm", "MatMul", (("N", 16), (16, 4)), (("N", 4),), params=64, macs=None,
              note="shape unknown: N"),
    )
    cand = Candidate(name="conv_a", op="Conv", params=1152, macs=18432, params_separable=200,
                     macs_separable=3200, break_even=144 / 25, max_rank=9, convertible=False,
                     reason="weight is not a constant")
    report = Report(model=ModelInfo("small.onnx", "onnx", 6000), layers=layers, params=1472,
                    weight_bytes=(("float32", 4 * 320), ("float16", 2 * 1152)))
    return report.with_candidates((cand,), (Excluded("conv_b", "1x1 kernel: nothing to separate"),), 0.9)
