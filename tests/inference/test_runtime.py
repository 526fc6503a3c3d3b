"""ONNX Runtime sessions: the device actually used is reported; a GPU request that falls back
to the CPU is visible."""

from __future__ import annotations

import onnxruntime as ort
from conftest import ENDO_ID, MODELS

from inference.manifest import load_manifest
from inference.runtime import SESSIONS, ModelSession, cpu_threads


def test_cpu_session_reports_cpu() -> None:
    s = ModelSession(load_manifest(MODELS / ENDO_ID), ["CPUExecutionProvider"])
    assert s.info.providers == ("CPUExecutionProvider",)
    assert s.info.device == "CPU"
    assert not s.info.fell_back


def test_gpu_request_without_gpu_falls_back_visibly() -> None:
    # This machine has onnxruntime-gpu but no CUDA: CUDA is listed as available, yet the
    # session silently runs on the CPU. The engine reads the truth from get_providers().
    assert "CUDAExecutionProvider" in ort.get_available_providers()
    s = ModelSession(load_manifest(MODELS / ENDO_ID))  # manifest order: TensorRT, CUDA, CPU
    assert s.info.requested[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert s.info.providers[0] == "CPUExecutionProvider"
    assert s.info.device == "CPU"
    assert s.info.fell_back
    assert "fell back" in s.info.describe()


def test_sessions_are_cached_and_threads_set() -> None:
    m = load_manifest(MODELS / ENDO_ID)
    a = SESSIONS.get(m, ["CPUExecutionProvider"])
    b = SESSIONS.get(m, ["CPUExecutionProvider"])
    assert a is b
    assert 1 <= cpu_threads() <= 512
