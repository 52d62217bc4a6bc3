"""The in-memory graph rewrites of workers/graphs.py: faster kernels, the same numbers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from config import get_settings
from domain.images import decode_bgr
from tests import images
from workers import graphs
from workers.engine import FaceEngine, resolve_pack


def _session(model: onnx.ModelProto | bytes) -> ort.InferenceSession:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _prelu_model(slope: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, len(slope), 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, len(slope), 4, 4])
    slope_tensor = numpy_helper.from_array(slope.reshape(-1, 1, 1).astype(np.float32), "slope")
    graph = helper.make_graph([helper.make_node("PRelu", ["x", "slope"], ["y"])], "g", [x], [y], [slope_tensor])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("slopes", [[0.25, -0.8, 0.0, 1.0], [-3.0, 0.5, 0.9, -0.1]])
def test_a_prelu_with_slopes_up_to_1_becomes_max_with_the_same_output(slopes):
    original = _prelu_model(np.array(slopes))
    rewritten = _prelu_model(np.array(slopes))
    assert graphs.prelu_as_max(rewritten) == 1
    assert [node.op_type for node in rewritten.graph.node] == ["Mul", "Max"]
    x = np.random.default_rng(0).normal(size=(1, len(slopes), 4, 4)).astype(np.float32)
    expected, got = _session(original).run(None, {"x": x})[0], _session(rewritten).run(None, {"x": x})[0]
    assert np.array_equal(expected, got)


def test_a_prelu_with_a_slope_above_1_is_left_alone():
    # max(x, s*x) would be wrong for x < 0 when s > 1.
    model = _prelu_model(np.array([0.5, 1.5]))
    assert graphs.prelu_as_max(model) == 0
    assert [node.op_type for node in model.graph.node] == ["PRelu"]


def test_the_bundled_recognizer_loses_every_prelu_and_embeds_bit_identically():
    pack = resolve_pack(get_settings())
    original = onnx.load(str(pack.recognizer))
    prelus = sum(node.op_type == "PRelu" for node in original.graph.node)
    assert prelus > 0
    rewritten = onnx.load_from_string(graphs.for_session(pack.recognizer))
    assert not [node for node in rewritten.graph.node if node.op_type == "PRelu"]
    crops = np.stack([decode_bgr(images.tom_hanks()), decode_bgr(images.another_photo(images.tom_hanks()))])
    blob = ((crops[..., ::-1].astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
    name = original.graph.input[0].name
    for face in blob:  # the model's output shape is fixed at batch 1
        expected = _session(original).run(None, {name: face[None]})[0]
        assert np.array_equal(expected, _session(rewritten).run(None, {name: face[None]})[0])


def test_the_engine_embeds_as_the_unmodified_model_does():
    # The engine's session options and one batch for all faces move the last digits (both paths
    # alike); what must hold is the same vector.
    engine = FaceEngine(get_settings())
    bgr = decode_bgr(images.group_photo())
    faces = engine.analyze(bgr)
    reference = engine.recognizer
    reference.session = _session(onnx.load(str(engine.pack.recognizer)))
    from insightface.utils import face_align

    crops = [face_align.norm_crop(bgr, landmark=face.kps) for face in faces]
    for face, crop in zip(faces, crops, strict=True):
        vector = reference.get_feat([crop])[0]
        assert float(face.embedding @ vector) / float(np.linalg.norm(vector)) > 0.99999
