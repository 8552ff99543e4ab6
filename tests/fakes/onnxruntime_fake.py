"""A strict stand-in for an ``onnxruntime-gpu`` build on a machine without a GPU.

Sessions compute with the real CPU onnxruntime, while the fake checks what a GPU build checks
(microsoft/onnxruntime sources):

- provider names must be compiled in, else ValueError (as ``InferenceSession`` does);
- provider options are checked against each provider's option names, and an unknown one fails
  with ``Unknown provider option: "<name>".`` (onnxruntime/core/framework/
  provider_options_utils.h, ``ProviderOptionsParser::Parse``; names from onnxruntime/core/
  providers/tensorrt/tensorrt_execution_provider_info.cc and .../cuda/
  cuda_execution_provider_info.cc);
- a model whose IR version is above the build's maximum fails with "Unsupported model IR
  version: N, max supported IR version: M" (onnxruntime/core/graph/model.cc; the message users
  meet when onnx is newer than onnxruntime, e.g. NVIDIA/TensorRT issue #4710);
- a provider that is compiled in but cannot load (missing CUDA/TensorRT libraries) is left out
  of ``get_providers()``, and the session runs on the rest.
"""

from __future__ import annotations

import types

import numpy as np
import onnx
import onnxruntime as real_ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail  # the real exception type

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"

TRT_OPTIONS = frozenset(["device_id", "has_user_compute_stream", "user_compute_stream",
    "trt_max_partition_iterations", "trt_min_subgraph_size", "trt_max_workspace_size",
    "trt_fp16_enable", "trt_int8_enable", "trt_int8_calibration_table_name",
    "trt_int8_use_native_calibration_table", "trt_dla_enable", "trt_dla_core",
    "trt_dump_subgraphs", "trt_engine_cache_enable", "trt_engine_cache_path",
    "trt_weight_stripped_engine_enable", "trt_onnx_model_folder_path", "trt_engine_cache_prefix",
    "trt_engine_decryption_enable", "trt_engine_decryption_lib_path",
    "trt_force_sequential_engine_build", "trt_context_memory_sharing_enable",
    "trt_layer_norm_fp32_fallback", "trt_timing_cache_enable", "trt_timing_cache_path",
    "trt_force_timing_cache", "trt_detailed_build_log", "trt_build_heuristics_enable",
    "trt_sparsity_enable", "trt_builder_optimization_level", "trt_auxiliary_streams",
    "trt_tactic_sources", "trt_extra_plugin_lib_paths", "trt_profile_min_shapes",
    "trt_profile_max_shapes", "trt_profile_opt_shapes", "trt_cuda_graph_enable",
    "trt_ep_context_embed_mode", "trt_ep_context_file_path", "trt_dump_ep_context_model",
    "trt_engine_hw_compatible", "trt_op_types_to_exclude"])
CUDA_OPTIONS = frozenset(["device_id", "has_user_compute_stream", "user_compute_stream",
    "gpu_mem_limit", "arena_extend_strategy", "cudnn_conv_algo_search",
    "do_copy_in_default_stream", "gpu_external_alloc", "gpu_external_free",
    "gpu_external_empty_cache", "cudnn_conv_use_max_workspace", "enable_cuda_graph",
    "cudnn_conv1d_pad_to_nc1d", "tunable_op_enable", "tunable_op_tuning_enable",
    "tunable_op_max_tuning_duration_ms", "enable_skip_layer_norm_strict_mode", "prefer_nhwc",
    "use_ep_level_unified_stream", "use_tf32"])
OPTIONS = {TRT: TRT_OPTIONS, CUDA: CUDA_OPTIONS, CPU: frozenset()}


def make_onnxruntime(available=(TRT, CUDA, CPU), loadable=(TRT, CUDA, CPU), max_ir: int = 10,
                     version: str = "1.31.1") -> types.ModuleType:
    """A fake ``onnxruntime`` module; ``module._sessions`` records each session's providers
    (name, options) as passed."""
    m = types.ModuleType("onnxruntime")
    m.__version__ = version
    m._sessions = []
    m.SessionOptions = real_ort.SessionOptions
    m.GraphOptimizationLevel = real_ort.GraphOptimizationLevel
    m.ExecutionMode = real_ort.ExecutionMode
    m.get_available_providers = lambda: list(available)

    class OrtValue:
        def __init__(self, array: np.ndarray, device: str) -> None:
            self._array, self._device = array, device

        @staticmethod
        def ortvalue_from_numpy(array, device_type: str = "cpu", device_id: int = 0):
            if device_type == "cuda" and CUDA not in loadable:
                raise Fail("CUDA device requested but the CUDA provider is not available")
            return OrtValue(np.array(array, copy=True), device_type)

        def numpy(self) -> np.ndarray:
            return self._array

    class IOBinding:
        def __init__(self, session) -> None:
            self._session, self._inputs, self._outputs, self._results = session, {}, [], None

        def bind_ortvalue_input(self, name: str, value: OrtValue) -> None:
            self._inputs[name] = value.numpy()

        def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0,
                        element_type=None, shape=None, buffer_ptr=None) -> None:
            self._outputs.append(name)

        def copy_outputs_to_cpu(self) -> list:
            return list(self._results)

    class InferenceSession:
        def __init__(self, path_or_bytes, sess_options=None, providers=None, **_) -> None:
            named = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1]))
                     for p in (providers or [CPU])]
            for name, opts in named:
                if name not in available:
                    raise ValueError(f"This ORT build has {list(available)} enabled; "
                                     f"{name} is not one of them")
                for key in opts:
                    if key not in OPTIONS[name]:
                        raise Fail(f'Unknown provider option: "{key}".')
            m._sessions.append(named)
            raw = path_or_bytes if isinstance(path_or_bytes, bytes) else open(
                path_or_bytes, "rb").read()
            ir = onnx.load_from_string(raw).ir_version
            if ir > max_ir:
                raise Fail(f"[ONNXRuntimeError] : 1 : FAIL : Unsupported model IR version: "
                           f"{ir}, max supported IR version: {max_ir}")
            self._real = real_ort.InferenceSession(raw, sess_options, providers=[CPU])
            self._providers = [n for n, _ in named if n in loadable and n != CPU] + [CPU]

        def get_providers(self) -> list[str]:
            return list(self._providers)

        def get_inputs(self):
            return self._real.get_inputs()

        def get_outputs(self):
            return self._real.get_outputs()

        def run(self, output_names, input_feed, run_options=None):
            return self._real.run(output_names, input_feed, run_options)

        def io_binding(self) -> IOBinding:
            return IOBinding(self)

        def run_with_iobinding(self, binding: IOBinding, run_options=None) -> None:
            binding._results = self._real.run(binding._outputs, binding._inputs)

    m.OrtValue, m.InferenceSession, m.Fail = OrtValue, InferenceSession, Fail
    return m
