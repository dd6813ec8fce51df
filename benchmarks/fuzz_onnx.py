"""Seed ONNX models and their mutators for the fuzzer (``fuzz_cases``): structure-aware edits of the
protobuf and byte-level edits of the serialised file. Seeded (``random.Random``), pure: builds bytes,
never imports sepconv.

Structure-aware mutators edit one field of a copy of a seed: dims, element/data types, attributes,
names, node order (shuffles, cycles, deletions, duplicates), initializer bytes (NaN/Inf, truncation,
external data pointing out of the folder), opsets and domains, local functions, and hostile branches
(allocation bombs, loops) that only a run of the graph would reveal.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

Mutator = Callable[[random.Random, onnx.ModelProto], str]
"""Edits the model in place and returns what it did (one short phrase)."""

BIG_DIMS = (0, -1, 1, 3, 2**31 - 1, 2**31, 2**62, 65536)
ODD_TYPES = (0, T.STRING, T.BOOL, T.FLOAT16, T.DOUBLE, T.INT8, T.BFLOAT16, 99, 40, 7)


def _conv(name: str, x: str, y: str, w: str, **attrs) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w], [y], name=name, **attrs)


def _weight(name: str, shape: tuple[int, ...], seed: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, functions=(), opsets=(("", 17),)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                              functions=list(functions))
    model.ir_version = 8
    return model


def seed_conv() -> onnx.ModelProto:
    """One 3x3 conv, 8 -> 16 channels, fixed input 1x8x16x16."""
    return _model([_conv("conv", "x", "y", "w", pads=[1, 1, 1, 1])],
                  [helper.make_tensor_value_info("x", T.FLOAT, [1, 8, 16, 16])],
                  [helper.make_tensor_value_info("y", T.FLOAT, [1, 16, 16, 16])], [_weight("w", (16, 8, 3, 3), 0)])


def seed_classifier() -> onnx.ModelProto:
    """conv-BN-relu-conv(groups 2)-relu-pool-flatten-gemm with a symbolic batch ``N``."""
    inits = [_weight("w1", (16, 4, 3, 3), 1), _weight("w2", (16, 8, 3, 3), 2), _weight("fc", (16, 10), 3),
             numpy_helper.from_array(np.ones(16, np.float32), "g"), numpy_helper.from_array(np.zeros(16, np.float32), "b"),
             numpy_helper.from_array(np.zeros(16, np.float32), "m"), numpy_helper.from_array(np.ones(16, np.float32), "v")]
    nodes = [_conv("stem/conv", "x", "c1", "w1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"], name="stem/bn"),
             helper.make_node("Relu", ["n1"], ["r1"], name="stem/relu"),
             _conv("block/conv", "r1", "c2", "w2", pads=[1, 1, 1, 1], group=2, strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"], name="block/relu"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], name="head")]
    return _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, ["N", 4, 12, 12])],
                  [helper.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], inits)


def seed_function() -> onnx.ModelProto:
    """A conv followed by a model-local function (``local.act``: Relu then Neg)."""
    body = [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Neg", ["t"], ["b"])]
    function = helper.make_function("local", "act", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    nodes = [_conv("conv", "x", "y", "w", pads=[1, 1, 1, 1]), helper.make_node("act", ["y"], ["z"], domain="local")]
    return _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, [1, 8, 16, 16])],
                  [helper.make_tensor_value_info("z", T.FLOAT, [1, 16, 16, 16])], [_weight("w", (16, 8, 3, 3), 4)],
                  [function], (("", 17), ("local", 1)))


SEEDS: dict[str, Callable[[], onnx.ModelProto]] = {"conv": seed_conv, "classifier": seed_classifier,
                                                   "function": seed_function}


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(model.graph.initializer)


def _values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)


def m_dims(rng: random.Random, model: onnx.ModelProto) -> str:
    if rng.random() < 0.5:
        tensor = rng.choice(_tensors(model))
        dims = list(tensor.dims)
        if rng.random() < 0.2:
            dims = dims[:-1] if dims and rng.random() < 0.5 else dims + [rng.choice(BIG_DIMS)]
        elif dims:
            dims[rng.randrange(len(dims))] = rng.choice(BIG_DIMS)
        del tensor.dims[:]
        tensor.dims.extend(dims)
        return f"initializer {tensor.name} dims {dims}"
    value = rng.choice(_values(model))
    shape = value.type.tensor_type.shape
    if not shape.dim:
        shape.dim.add().dim_value = rng.choice(BIG_DIMS)
    dim = rng.choice(list(shape.dim))
    if rng.random() < 0.3:
        dim.dim_param = rng.choice(["N", "", "?", "x" * 300, "N+1"])
    else:
        dim.dim_value = rng.choice(BIG_DIMS)
    return f"value {value.name} dims"


def m_dtype(rng: random.Random, model: onnx.ModelProto) -> str:
    new = rng.choice(ODD_TYPES)
    if rng.random() < 0.5:
        tensor = rng.choice(_tensors(model))
        tensor.data_type = new
        return f"initializer {tensor.name} data type {new}"
    value = rng.choice(_values(model))
    value.type.tensor_type.elem_type = new
    return f"value {value.name} elem type {new}"


def m_attribute(rng: random.Random, model: onnx.ModelProto) -> str:
    node = rng.choice([n for n in model.graph.node if n.attribute] or list(model.graph.node))
    if not node.attribute or rng.random() < 0.2:
        node.attribute.append(helper.make_attribute(rng.choice(["group", "pads", "kernel_shape", "zzz", "axis"]),
                                                    rng.choice([0, -1, 2**40, [1, 2], [0] * 9, "s"])))
        return f"{node.name}: attribute added"
    attr = rng.choice(list(node.attribute))
    choice = rng.random()
    if choice < 0.4 and attr.type == onnx.AttributeProto.INTS and attr.ints:
        attr.ints[rng.randrange(len(attr.ints))] = rng.choice([0, -1, -(2**62), 2**40, 7])
    elif choice < 0.6:
        attr.type = rng.choice([onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT, onnx.AttributeProto.STRING,
                                onnx.AttributeProto.TENSOR, onnx.AttributeProto.GRAPH, 99])
    elif choice < 0.8:
        attr.i = rng.choice([0, -1, 2**40, -(2**62)])
        attr.type = onnx.AttributeProto.INT
    else:
        node.attribute.remove(attr)
    return f"{node.name}: attribute {attr.name}"


def m_name(rng: random.Random, model: onnx.ModelProto) -> str:
    graph = model.graph
    names = sorted({n for node in graph.node for n in list(node.input) + list(node.output) if n})
    old = rng.choice(names)
    new = rng.choice(["", "\x1b[31mred", "a" * 100_000, "x", rng.choice(names), "../../etc/passwd", "名前",
                      "\u202etxt.exe"])
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old and rng.random() < 0.7:
                    field[i] = new
    for item in list(graph.initializer) + _values(model):
        if item.name == old and rng.random() < 0.7:
            item.name = new
    if rng.random() < 0.3:
        node = rng.choice(list(graph.node))
        node.name = new
    return f"name {old!r} -> {new[:20]!r}"


def m_order(rng: random.Random, model: onnx.ModelProto) -> str:
    nodes = list(model.graph.node)
    choice = rng.random()
    if choice < 0.3:
        rng.shuffle(nodes)
        what = "shuffled"
    elif choice < 0.55 and len(nodes) > 1:
        late = rng.randrange(1, len(nodes))
        early = rng.randrange(late)
        nodes[early].input[0] = nodes[late].output[0]  # a cycle (or a use before definition)
        what = f"cycle {early}<-{late}"
    elif choice < 0.75 and len(nodes) > 1:
        nodes.pop(rng.randrange(len(nodes)))
        what = "node deleted"
    else:
        copy = onnx.NodeProto()
        copy.CopyFrom(rng.choice(nodes))
        nodes.insert(rng.randrange(len(nodes) + 1), copy)
        what = "node duplicated"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return what


def m_weight_bytes(rng: random.Random, model: onnx.ModelProto) -> str:
    tensor = rng.choice(_tensors(model))
    if tensor.data_type != T.FLOAT or not tensor.raw_data:
        tensor.raw_data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64])))
        return f"{tensor.name}: raw bytes replaced"
    values = np.frombuffer(tensor.raw_data, np.float32).copy()
    choice = rng.random()
    if choice < 0.45:
        poison = rng.choice([np.nan, np.inf, -np.inf, 3.4e38, 1e-45])
        values[rng.randrange(values.size) if rng.random() < 0.7 else slice(None)] = poison
        tensor.raw_data = values.tobytes()
        return f"{tensor.name}: {poison} written"
    if choice < 0.7:
        tensor.raw_data = tensor.raw_data[: rng.randrange(len(tensor.raw_data))]
        return f"{tensor.name}: raw data truncated"
    tensor.ClearField("raw_data")
    tensor.data_location = T.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", rng.choice(["../../../etc/passwd", "/dev/zero", "missing.bin",
                                                     "weights.bin", "/proc/self/mem", "a" * 5000])
    for key, value in (("offset", rng.choice(["0", "-5", "99999999999"])), ("length", rng.choice(["4608", "-1"]))):
        if rng.random() < 0.5:
            extra = tensor.external_data.add()
            extra.key, extra.value = key, value
    return f"{tensor.name}: external data {entry.value[:30]}"


def m_opset(rng: random.Random, model: onnx.ModelProto) -> str:
    choice = rng.random()
    if choice < 0.3:
        model.opset_import[0].version = rng.choice([0, 1, 5, 99999, -3])
    elif choice < 0.5:
        model.ir_version = rng.choice([0, 1, 3, 99, -1])
    elif choice < 0.75:
        node = rng.choice(list(model.graph.node))
        node.domain = rng.choice(["com.evil", "ai.onnx.ml", "local", "x" * 200])
    else:
        node = rng.choice(list(model.graph.node))
        node.op_type = rng.choice(["Foo", "", "Loop", "Conv", "If", "act", "Relu"])
    return "opset/domain/op edited"


def m_function(rng: random.Random, model: onnx.ModelProto) -> str:
    calls = [rng.choice(["rec", "other"]) for _ in range(2)]
    for name, callee in zip(("rec", "other"), calls):
        model.functions.append(helper.make_function("local", name, ["a"], ["b"],
                                                    [helper.make_node(callee, ["a"], ["b"], domain="local")],
                                                    [helper.make_opsetid("local", 1)]))
    if not any(o.domain == "local" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("local", 1))
    last = model.graph.node[-1]
    model.graph.node.append(helper.make_node("rec", [last.output[0]], ["rec_out"], domain="local"))
    model.graph.output[0].name = "rec_out"
    return f"local functions calling {calls}"


def m_bomb(rng: random.Random, model: onnx.ModelProto) -> str:
    """A branch added to the first output: an allocation bomb, a long loop, or a huge Expand/Tile."""
    out = model.graph.output[0].name
    side = rng.choice([65536, 40000, 2**20])
    shape = numpy_helper.from_array(np.array([side, side], np.int64), "bomb_shape")
    fill = numpy_helper.from_array(np.array([0.0], np.float32))
    op = rng.choice(["ConstantOfShape", "Expand", "Loop"])
    if op == "Loop":
        trips = numpy_helper.from_array(np.array(2**40, np.int64), "bomb_trips")
        cond = numpy_helper.from_array(np.array(True), "bomb_cond")
        body = helper.make_graph([helper.make_node("Identity", ["ci"], ["co"]), helper.make_node("Identity", ["vi"], ["vo"])],
                                 "spin", [helper.make_tensor_value_info("i", T.INT64, []),
                                          helper.make_tensor_value_info("ci", T.BOOL, []),
                                          helper.make_tensor_value_info("vi", T.FLOAT, [])],
                                 [helper.make_tensor_value_info("co", T.BOOL, []),
                                  helper.make_tensor_value_info("vo", T.FLOAT, [])])
        zero = numpy_helper.from_array(np.array(0.0, np.float32), "bomb_zero")
        model.graph.initializer.extend([trips, cond, zero])
        nodes = [helper.make_node("Loop", ["bomb_trips", "bomb_cond", "bomb_zero"], ["bomb_sum"], body=body)]
    else:
        model.graph.initializer.append(shape)
        first = (helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"], value=fill) if op == "ConstantOfShape"
                 else helper.make_node("Expand", ["bomb_scalar", "bomb_shape"], ["bomb"]))
        if op == "Expand":
            model.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "bomb_scalar"))
        nodes = [first, helper.make_node("ReduceSum", ["bomb"], ["bomb_sum"], keepdims=0)]
    model.graph.node.extend(nodes + [helper.make_node("Add", [out, "bomb_sum"], ["bombed"])])
    model.graph.output[0].name = "bombed"
    return f"{op} bomb"


STRUCTURE_MUTATORS: dict[str, Mutator] = {
    "dims": m_dims, "dtype": m_dtype, "attribute": m_attribute, "name": m_name, "order": m_order,
    "weight-bytes": m_weight_bytes, "opset": m_opset, "function": m_function, "bomb": m_bomb,
}


def flip_utf8(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A length-prefixed short name in ``data`` with its first byte made invalid UTF-8."""
    spots = [i for i in range(1, len(data) - 1) if 1 <= data[i] <= 12 and data[i + 1:i + 1 + data[i]].isascii()
             and data[i + 1:i + 1 + data[i]].isalpha()]
    if not spots:
        return data, "no name to flip"
    at = rng.choice(spots)
    return data[:at + 1] + b"\xff" + data[at + 2:], f"name byte at {at} made invalid UTF-8"


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One byte-level edit of a serialised file: bit flips, byte runs, truncation, insertion, splicing."""
    buf = bytearray(data)
    choice = rng.random()
    if choice < 0.3:
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(buf))
            buf[at] ^= 1 << rng.randrange(8)
        return bytes(buf), "bits flipped"
    if choice < 0.45:
        at = rng.randrange(len(buf))
        buf[at:at + rng.randint(1, 16)] = bytes([rng.choice([0, 0xFF, 0x7F, 0x80])]) * rng.randint(1, 16)
        return bytes(buf), "byte run written"
    if choice < 0.6:
        return bytes(buf[: rng.randrange(len(buf))]), "truncated"
    if choice < 0.75:
        at = rng.randrange(len(buf))
        return bytes(buf[:at]) + rng.randbytes(rng.randint(1, 64)) + bytes(buf[at:]), "random bytes inserted"
    if choice < 0.9:
        start = rng.randrange(len(buf))
        chunk = bytes(buf[start:start + rng.randint(1, 256)])
        at = rng.randrange(len(buf))
        return bytes(buf[:at]) + chunk * rng.randint(1, 4) + bytes(buf[at:]), "chunk duplicated"
    return flip_utf8(rng, data)


def serialise(model: onnx.ModelProto) -> bytes:
    """The model's bytes, even when a mutation made it unfit for ``onnx.save`` (no checks run)."""
    return model.SerializeToString()
