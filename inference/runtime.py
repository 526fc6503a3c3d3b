"""ONNX Runtime sessions: provider order TensorRT -> CUDA -> CPU, the device really used
(read back from the session, so a silent CPU fallback is visible), cached and warmed up."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inference.errors import ModelError
from inference.manifest import Manifest, verify_model_file

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_DEVICE = {
    "TensorrtExecutionProvider": "GPU (TensorRT)",
    "CUDAExecutionProvider": "GPU (CUDA)",
    "CPUExecutionProvider": "CPU",
}
_NP_DTYPE = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "uint8": np.uint8}


def cpu_threads() -> int:
    """Intra-op threads: the cores this process may use (2 on the reference machine)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    env = os.environ.get("LOUPE_CPU_THREADS")
    return max(1, int(env)) if env and env.isdigit() else max(1, n)


@dataclass(frozen=True)
class SessionInfo:
    model_id: str
    model_version: str
    requested: tuple[str, ...]
    providers: tuple[str, ...]  # from session.get_providers(): what ORT really uses

    @property
    def device(self) -> str:
        return _DEVICE.get(self.providers[0], self.providers[0]) if self.providers else "none"

    @property
    def fell_back(self) -> bool:
        """True when a GPU provider was asked for first but the session runs on another one."""
        return bool(self.requested) and self.requested[0] != self.providers[0]

    def describe(self) -> str:
        s = f"{self.device} ({', '.join(self.providers)})"
        if self.fell_back:
            s += f"; asked for {self.requested[0]}, not available here: fell back"
        return s


class ModelSession:
    """One ONNX Runtime session for one manifest: fixed input shape, serialised runs."""

    def __init__(self, manifest: Manifest, providers: Sequence[str] | None = None) -> None:
        verify_model_file(manifest)
        self.manifest = manifest
        wanted = tuple(providers) if providers else manifest.providers
        available = set(ort.get_available_providers())
        requested = tuple(p for p in wanted if p in available) or ("CPUExecutionProvider",)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cpu_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # the CUDA fallback warning is reported through SessionInfo
        provider_options: list[dict[str, Any]] = []
        for p in requested:
            if p == "TensorrtExecutionProvider":
                # fp16 engines, cached beside the user's data: the first build takes minutes.
                cache = os.environ.get("LOUPE_TRT_CACHE", os.path.expanduser("~/.cache/loupe/trt"))
                provider_options.append(
                    {
                        "trt_fp16_enable": True,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": cache,
                    }
                )
            elif p == "CUDAExecutionProvider":
                provider_options.append(
                    {"cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": True}
                )
            else:
                provider_options.append({})
        try:
            # Without CUDA/TensorRT libraries ORT prints an "EP Error" banner on stdout and
            # error lines on stderr, then falls back. Keep stdout clean (loupe ... --json);
            # the fallback is reported through SessionInfo instead.
            quiet = requested[0] != "CPUExecutionProvider"
            if quiet:
                ort.set_default_logger_severity(4)
            with contextlib.redirect_stdout(io.StringIO()) as banner:
                self._session = ort.InferenceSession(
                    str(manifest.model_path),
                    sess_options=opts,
                    providers=list(requested),
                    provider_options=provider_options,
                )
            if banner.getvalue().strip():
                log.info("ONNX Runtime: %s", banner.getvalue().strip())
        except Exception as exc:  # ORT raises its own exception types for a broken graph
            raise ModelError(
                f"model {manifest.id}: ONNX Runtime cannot load {manifest.model_path.name}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        finally:
            ort.set_default_logger_severity(2)
        self.info = SessionInfo(
            manifest.id, manifest.version, requested, tuple(self._session.get_providers())
        )
        if self.info.fell_back:
            log.warning("model %s runs on %s", manifest.id, self.info.describe())
        self._check_io()
        self._lock = threading.Lock()

    def _check_io(self) -> None:
        got = {i.name: i for i in self._session.get_inputs()}
        for spec in self.manifest.inputs:
            if spec.name not in got:
                raise ModelError(
                    f"model {self.manifest.id}: manifest input {spec.name!r} is not in the graph "
                    f"(graph inputs: {', '.join(got)})"
                )
            shape = tuple(got[spec.name].shape)
            if shape != spec.shape:
                raise ModelError(
                    f"model {self.manifest.id}: input {spec.name!r} has shape {shape} in the "
                    f"graph, the manifest says {spec.shape}"
                )
        outs = {o.name for o in self._session.get_outputs()}
        for spec in self.manifest.outputs:
            if spec.name not in outs:
                raise ModelError(
                    f"model {self.manifest.id}: manifest output {spec.name!r} is not in the graph"
                )

    def warm_up(self) -> None:
        """One run on zeros so the first real patch does not pay for allocations."""
        self.run(
            {s.name: np.zeros(s.shape, dtype=_NP_DTYPE[s.dtype]) for s in self.manifest.inputs}
        )

    def run(self, feeds: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        names = [o.name for o in self.manifest.outputs]
        with self._lock:
            out = self._session.run(names, feeds)
        return {n: np.asarray(v) for n, v in zip(names, out, strict=True)}


class SessionCache:
    """Sessions by (model id, version, providers), created once and warmed up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str, tuple[str, ...], str], ModelSession] = {}

    def get(self, manifest: Manifest, providers: Sequence[str] | None = None) -> ModelSession:
        key = (manifest.id, manifest.version, tuple(providers or ()), manifest.sha256)
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                s = ModelSession(manifest, providers)
                s.warm_up()
                self._sessions[key] = s
            return s

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


SESSIONS = SessionCache()
