"""ORT_PROVIDERS: a provider this onnxruntime lacks is an error, never a silent CPU fallback
(a worker asked for OpenVINO must not quietly run something else)."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from config import get_settings
from workers.engine import FaceEngine, ModelError, execution_providers

OPENVINO = "OpenVINOExecutionProvider"


def test_an_unknown_provider_fails_naming_it_and_what_is_available():
    settings = get_settings().model_copy(update={"ort_providers": ("NoSuchExecutionProvider",)})
    with pytest.raises(ModelError, match=r"NoSuchExecutionProvider.*CPUExecutionProvider"):
        FaceEngine(settings)


@pytest.mark.skipif(OPENVINO in ort.get_available_providers(), reason="this onnxruntime has OpenVINO")
def test_openvino_without_the_openvino_build_fails_instead_of_running_on_the_cpu_provider():
    settings = get_settings().model_copy(update={"ort_providers": (OPENVINO, "CPUExecutionProvider")})
    with pytest.raises(ModelError, match="onnxruntime-openvino"):
        FaceEngine(settings)


def test_openvino_gets_the_sessions_thread_count():
    """OpenVINO keeps its own thread pool: without num_of_threads each worker process would use
    every core (ORT_THREADS is cores / processes)."""
    providers = execution_providers(
        (OPENVINO, "CPUExecutionProvider"), threads=1, available={OPENVINO, "CPUExecutionProvider"}
    )
    assert providers == [(OPENVINO, {"device_type": "CPU", "num_of_threads": "1"}), "CPUExecutionProvider"]


def test_the_default_cpu_provider_is_kept_as_asked():
    assert execution_providers(("CPUExecutionProvider",), threads=2, available={"CPUExecutionProvider"}) == [
        "CPUExecutionProvider"
    ]


def test_both_sessions_keep_the_providers_asked_for():
    """insightface's SCRFD.prepare(ctx_id=-1) resets its session to the CPU provider: the detector
    ran on the CPU whatever ORT_PROVIDERS said (OpenVINO, CUDA). AzureExecutionProvider stands in
    for any provider besides the CPU one (the stock onnxruntime build has it)."""
    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no second provider to ask for")
    asked = ("AzureExecutionProvider", "CPUExecutionProvider")
    engine = FaceEngine(get_settings().model_copy(update={"ort_providers": asked}))
    assert engine.detector.session.get_providers() == list(asked)
    assert engine.recognizer.session.get_providers() == list(asked)
