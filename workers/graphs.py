"""Rewrites of the model graphs that onnxruntime's CPU provider runs faster, with the same outputs.

Applied in memory as each worker process builds its sessions (workers/engine.py); the files on
disk, and their pinned hashes, stay as shipped.

PRelu: ArcFace recognizers (MobileFaceNet, the IResNets) follow most convolutions with a PRelu
whose slope is one value per channel. onnxruntime 1.31 runs PRelu as a generic broadcast and
cannot keep it in its blocked (NCHWc) convolution layout, so each one also costs two layout
reorders: a third of the recognizer's time on this CPU (PERFORMANCE.md, section 11). For a
slope s <= 1, PRelu(x) = max(x, s * x) exactly (x >= 0: s*x <= x; x < 0: s*x >= x), and Mul and
Max are the elementwise kernels onnxruntime vectorises. The product is the one PRelu computes,
so the result is bit-identical; a PRelu with any slope above 1, or a slope that is not a
constant of the model, is left as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def prelu_as_max(model: onnx.ModelProto) -> int:
    """Replace each PRelu with a constant slope <= 1 by Mul + Max, in place; the count replaced."""
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes, replaced = [], 0
    for node in model.graph.node:
        slope = constants.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or np.any(numpy_helper.to_array(slope) > 1):
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        scaled = f"{y}__prelu_scaled"
        nodes += [helper.make_node("Mul", [x, node.input[1]], [scaled]), helper.make_node("Max", [x, scaled], [y])]
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return replaced


def for_session(path: Path) -> bytes:
    """The model at `path`, rewritten, serialised for `onnxruntime.InferenceSession`."""
    model = onnx.load(str(path))
    prelu_as_max(model)
    return model.SerializeToString()
