"""A strict stand-in for the ``tensorrt`` Python module of TensorRT 10.13 or 11.1.

It exposes only the names lkmseg may touch, with the members, enum values and return types of
the real bindings, so code that would fail on real TensorRT fails here too. Sources (NVIDIA/
TensorRT, branches release/10.13 and release/11.1):

- ``IHostMemory`` (what ``build_serialized_network`` and ``ITimingCache.serialize`` return):
  buffer protocol, ``nbytes`` and ``dtype``, and no ``__len__``
  (python/src/infer/pyFoundationalTypes.cpp L297-302 in both branches). Here: a ctypes
  Structure, which has the buffer protocol and no length.
- ``NetworkDefinitionCreationFlag``: 10.13 has EXPLICIT_BATCH=0 (deprecated, ignored),
  STRONGLY_TYPED=1, PREFER_JIT_PYTHON_PLUGINS=2, PREFER_AOT_PYTHON_PLUGINS=3 (include/NvInfer.h
  L10470-10491); 11.1 has STRONGLY_TYPED=0 (deprecated: "Strongly typed mode is always
  enabled ... ignored"), PREFER_JIT_PYTHON_PLUGINS=1, PREFER_AOT_PYTHON_PLUGINS=2 (include/
  NvInfer.h L11462-11481).
- ``BuilderFlag``: the members bound in python/src/infer/pyCore.cpp (``py::enum_<BuilderFlag>``)
  with the values of include/NvInfer.h; 11.1 has no FP16/BF16/INT8/FP8/INT4/FP4 and no
  precision-constraint flags. TF32 is "Enabled by default" in both (NvInfer.h, kTF32).
- ``set_timing_cache`` returns bool: false when the cache was made on a device with other
  properties (NvInfer.h 10.13 L10025-10043); ``execute_async_v3``, ``set_tensor_address`` and
  ``set_input_shape`` return bool (pyCore.cpp L113-121, L1332-1340).
- ``get_tensor_profile_shape`` returns three ``Dims`` (pyCore.cpp L187-194); an invalid profile
  index or a name that is not an input gives ``Dims{-1}`` (NvInferRuntime.h 10.13 L3624), whose
  ``len()`` raises ValueError (pybind ``__len__`` returns nbDims).
- ``deserialize_cuda_engine`` takes any buffer and returns None for a plan it cannot read.
- Enqueueing on stream 0 (the legacy default stream) works but is logged as a warning, as the
  real enqueueV3 documents ("Using default stream may lead to performance issues",
  NvInferRuntime.h 10.13 L4937, 11.1 L4639).

The fake "GPU" runs the parsed ONNX graph with CPU onnxruntime, reading inputs from and
writing outputs to the raw addresses given to ``set_tensor_address`` (so tests pass CPU torch
tensors' ``data_ptr()``), in the dtype the engine reports for each tensor.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path

import numpy as np

PLAN_MAGIC = b"FAKE-TRT-PLAN\n"
CACHE_MAGIC = b"FAKE-TRT-TIMING\n"

NETWORK_FLAGS = {
    10: {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2,
         "PREFER_AOT_PYTHON_PLUGINS": 3},
    11: {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
}
BUILDER_FLAGS = {
    10: {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4,
         "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8,
         "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10, "DIRECT_IO": 11,
         "VERSION_COMPATIBLE": 13, "EXCLUDE_LEAN_RUNTIME": 14, "FP8": 15,
         "ERROR_ON_TIMING_CACHE_MISS": 16, "BF16": 17, "DISABLE_COMPILATION_CACHE": 18,
         "STRIP_PLAN": 19, "WEIGHTLESS": 19, "REFIT_IDENTICAL": 20, "WEIGHT_STREAMING": 21,
         "INT4": 22, "REFIT_INDIVIDUAL": 23, "STRICT_NANS": 24, "MONITOR_MEMORY": 25,
         "FP4": 26, "EDITABLE_TIMING_CACHE": 27, "DISTRIBUTIVE_INDEPENDENCE": 28},
    11: {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
         "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8, "DIRECT_IO": 11, "VERSION_COMPATIBLE": 12,
         "EXCLUDE_LEAN_RUNTIME": 13, "ERROR_ON_TIMING_CACHE_MISS": 15,
         "DISABLE_COMPILATION_CACHE": 17, "STRIP_PLAN": 18, "REFIT_IDENTICAL": 19,
         "WEIGHT_STREAMING": 20, "REFIT_INDIVIDUAL": 22, "STRICT_NANS": 23,
         "MONITOR_MEMORY": 24, "EDITABLE_TIMING_CACHE": 26, "DISTRIBUTIVE_INDEPENDENCE": 27},
}
DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4,
                                     "UINT8": 5, "FP8": 6, "BF16": 7, "INT64": 8})
TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
MemoryPoolType = enum.IntEnum("MemoryPoolType", {
    "WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3,
    "TACTIC_DRAM": 4, "TACTIC_SHARED_MEMORY": 5})
_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32,
       DataType.INT64: np.int64}
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 6: DataType.INT32, 7: DataType.INT64}


class Dims:
    """Like tensorrt.Dims: len() is nbDims (ValueError when -1), indexing, == tuple/list."""

    def __init__(self, shape=(), nb_dims: int | None = None) -> None:
        self._d = [int(s) for s in shape]
        self._n = len(self._d) if nb_dims is None else nb_dims

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> int:
        n = max(self._n, 0)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for Dims of {self._n} dims")
        return self._d[i]

    def __eq__(self, other: object) -> bool:
        return self._n >= 0 and list(self._d) == list(other)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"({', '.join(map(str, self._d))})" if self._n >= 0 else "Dims(nbDims=-1)"


class IHostMemory(ctypes.Structure):
    """Buffer protocol + nbytes + dtype; no __len__ (a ctypes Structure has none)."""

    @property
    def nbytes(self) -> int:
        return ctypes.sizeof(self)

    @property
    def dtype(self) -> DataType:
        return DataType.UINT8


def _host_memory(data: bytes) -> IHostMemory:
    cls = type("IHostMemory", (IHostMemory,), {"_fields_": [("_data", ctypes.c_ubyte * len(data))]})
    return cls.from_buffer_copy(data)


class _Tensor:
    def __init__(self, name: str, shape: list[int], dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, Dims(shape), dtype


def _io_from_onnx(path: Path) -> tuple[list, list, bytes]:
    import onnx

    model = onnx.load(str(path))
    used = {i.name for i in model.graph.initializer}

    def tensor(vi) -> dict:
        dims = vi.type.tensor_type.shape.dim
        return {"name": vi.name, "dtype": int(_FROM_ONNX[vi.type.tensor_type.elem_type]),
                "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in dims],
                "symbols": [d.dim_param if d.HasField("dim_param") else "" for d in dims]}

    ins = [tensor(v) for v in model.graph.input if v.name not in used]
    return ins, [tensor(v) for v in model.graph.output], model.SerializeToString()


def make_tensorrt(version: str = "10.13.3.9", gpu_key: str = "NVIDIA L4/8.9",
                  static_profile: str = "shape") -> types.ModuleType:
    """A fresh fake ``tensorrt`` module for ``version`` (10.x or 11.x).

    ``gpu_key`` stands for the CUDA device properties a timing cache is tied to;
    ``static_profile`` is what ``get_tensor_profile_shape`` returns for an input with no
    dynamic dimension: "shape" (its shape three times) or "invalid" (Dims{-1}).
    ``module._log`` collects (severity, message) the way a real Logger would print them."""
    major = int(version.split(".")[0])
    m = types.ModuleType("tensorrt")
    m.__version__ = version
    m._log = []
    m.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                   NETWORK_FLAGS[major])
    m.BuilderFlag = enum.IntEnum("BuilderFlag", BUILDER_FLAGS[major])
    m.DataType, m.TensorIOMode, m.MemoryPoolType = DataType, TensorIOMode, MemoryPoolType
    m.Dims, m.IHostMemory = Dims, IHostMemory
    _build_classes(m, major, gpu_key, static_profile)
    return m


def _build_classes(m: types.ModuleType, major: int, gpu_key: str, static_profile: str) -> None:
    log = m._log.append
    Flag = m.BuilderFlag

    class Logger:
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2,
                                             "INFO": 3, "VERBOSE": 4})
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

        def __init__(self, min_severity=None) -> None:
            self.min_severity = Logger.WARNING if min_severity is None else min_severity

    class ParserError:
        def __init__(self, text: str) -> None:
            self._text = text

        def desc(self) -> str:
            return self._text

        def code(self) -> int:
            return 1

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            known = sum(1 << int(f) for f in m.NetworkDefinitionCreationFlag)
            if flags & ~known:
                raise TypeError(f"unknown NetworkDefinitionCreationFlag bits in {flags:#x}")
            self.flags = flags
            typed = 1 << int(m.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            self.strongly_typed = major >= 11 or bool(flags & typed)
            self._inputs: list[_Tensor] = []
            self._outputs: list[_Tensor] = []
            self._io: dict = {}

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, index: int):
            return self._inputs[index] if 0 <= index < len(self._inputs) else None

        def get_output(self, index: int):
            return self._outputs[index] if 0 <= index < len(self._outputs) else None

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            if not isinstance(network, INetworkDefinition) or not isinstance(logger, Logger):
                raise TypeError("OnnxParser(network: INetworkDefinition, logger: ILogger)")
            self._network, self._errors = network, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def parse_from_file(self, model: str) -> bool:
            from google.protobuf.message import DecodeError

            try:
                ins, outs, data = _io_from_onnx(Path(model))
            except (OSError, DecodeError, KeyError) as e:
                self._errors.append(ParserError(f"failed to parse {model}: {e}"))
                return False
            net = self._network
            net._inputs = [_Tensor(t["name"], t["shape"], DataType(t["dtype"])) for t in ins]
            net._outputs = [_Tensor(t["name"], t["shape"], DataType(t["dtype"])) for t in outs]
            net._io = {"inputs": ins, "outputs": outs, "onnx": data}
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002 — the real names
            lo, mid, hi = (list(map(int, s)) for s in (min, opt, max))
            if not (len(lo) == len(mid) == len(hi)) or any(
                    not a <= b <= c for a, b, c in zip(lo, mid, hi)):
                raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
            self.shapes[input] = [lo, mid, hi]

    class ITimingCache:
        def __init__(self, key: str, entries: int) -> None:
            self.key, self.entries = key, entries

        def serialize(self) -> IHostMemory:
            body = json.dumps({"key": self.key, "entries": self.entries}).encode()
            return _host_memory(CACHE_MAGIC + body)

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags = {Flag.TF32}  # TF32: "Enabled by default"
            self.pools: dict = {}
            self.profiles: list[IOptimizationProfile] = []
            self.timing_cache: ITimingCache | None = None

        def set_memory_pool_limit(self, pool, pool_size: int) -> None:
            if not isinstance(pool, MemoryPoolType) or not isinstance(pool_size, int):
                raise TypeError("set_memory_pool_limit(pool: MemoryPoolType, pool_size: int)")
            self.pools[pool] = pool_size

        def _flag(self, flag):
            if not isinstance(flag, Flag):
                raise TypeError(f"incompatible function arguments: {flag!r} is not a BuilderFlag")
            return flag

        def set_flag(self, flag) -> None:
            self.flags.add(self._flag(flag))

        def clear_flag(self, flag) -> None:
            self.flags.discard(self._flag(flag))

        def get_flag(self, flag) -> bool:
            return self._flag(flag) in self.flags

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache) -> ITimingCache:
            raw = bytes(memoryview(serialized_timing_cache))
            if not raw:
                return ITimingCache(gpu_key, 0)
            if not raw.startswith(CACHE_MAGIC):
                log((Logger.ERROR, "invalid timing cache"))
                return None
            d = json.loads(raw[len(CACHE_MAGIC):])
            return ITimingCache(d["key"], d["entries"])

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if cache.key != gpu_key and not ignore_mismatch:
                log((Logger.ERROR, "timing cache was made on a device with other properties"))
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            if not isinstance(logger, Logger):
                raise TypeError("Builder(logger: ILogger)")

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(int(flags))

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            return _build(network, config)

    def _build(network: INetworkDefinition, config: IBuilderConfig):
        if not network._io:
            log((Logger.ERROR, "network has no inputs"))
            return None
        if network.strongly_typed and Flag.__members__.get("FP16") in config.flags:
            log((Logger.ERROR, "FP16 builder flag is not allowed in a strongly typed network"))
            return None
        profiles = {}
        for t in network._io["inputs"]:
            dynamic = -1 in t["shape"]
            shapes = next((p.shapes[t["name"]] for p in config.profiles
                           if t["name"] in p.shapes), None)
            if dynamic and shapes is None:
                log((Logger.ERROR, f"{t['name']}: dynamic input needs an optimization profile"))
                return None
            profiles[t["name"]] = shapes
        if config.timing_cache is not None:
            config.timing_cache.entries += 1
        head = {"inputs": network._io["inputs"], "outputs": network._io["outputs"],
                "profiles": profiles, "flags": sorted(f.name for f in config.flags),
                "strongly_typed": network.strongly_typed}
        head_b = json.dumps(head).encode()
        return _host_memory(PLAN_MAGIC + len(head_b).to_bytes(8, "little") + head_b
                            + network._io["onnx"])

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            if not isinstance(logger, Logger):
                raise TypeError("Runtime(logger: ILogger)")

        def deserialize_cuda_engine(self, serialized_engine):
            raw = bytes(memoryview(serialized_engine))
            if not raw.startswith(PLAN_MAGIC):
                log((Logger.ERROR, "IRuntime::deserializeCudaEngine: invalid plan"))
                return None
            n = int.from_bytes(raw[len(PLAN_MAGIC):len(PLAN_MAGIC) + 8], "little")
            start = len(PLAN_MAGIC) + 8
            return ICudaEngine(json.loads(raw[start:start + n]), raw[start + n:])

    class ICudaEngine:
        def __init__(self, head: dict, onnx_bytes: bytes) -> None:
            self._head, self._onnx = head, onnx_bytes
            self._tensors = {t["name"]: (TensorIOMode.INPUT, t) for t in head["inputs"]}
            self._tensors.update({t["name"]: (TensorIOMode.OUTPUT, t) for t in head["outputs"]})
            self._session = None

        num_io_tensors = property(lambda self: len(self._tensors))
        num_optimization_profiles = property(lambda self: 1)

        def get_tensor_name(self, index: int) -> str:
            return list(self._tensors)[index]

        def get_tensor_mode(self, name: str):
            return self._tensors[name][0] if name in self._tensors else TensorIOMode.NONE

        def get_tensor_dtype(self, name: str):
            return DataType(self._tensors[name][1]["dtype"])

        def get_tensor_shape(self, name: str) -> Dims:
            if name not in self._tensors:
                return Dims(nb_dims=-1)
            return Dims(self._tensors[name][1]["shape"])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
            mode, t = self._tensors.get(name, (TensorIOMode.NONE, None))
            if mode != TensorIOMode.INPUT or profile_index != 0:
                return [Dims(nb_dims=-1)] * 3
            shapes = self._head["profiles"].get(name)
            if shapes is None:
                if static_profile == "invalid":
                    return [Dims(nb_dims=-1)] * 3
                shapes = [t["shape"]] * 3
            return [Dims(s) for s in shapes]

        def create_execution_context(self):
            return IExecutionContext(self)

        def _run(self, feeds: dict) -> list:
            if self._session is None:
                import onnxruntime as ort

                self._session = ort.InferenceSession(self._onnx,
                                                     providers=["CPUExecutionProvider"])
            return self._session.run(None, feeds)

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self._shapes: dict[str, tuple] = {}
            self._addr: dict[str, int] = {}

        def set_input_shape(self, name: str, shape) -> bool:
            eng = self.engine
            if eng.get_tensor_mode(name) != TensorIOMode.INPUT:
                return False
            shape = tuple(int(s) for s in shape)
            dims = eng.get_tensor_profile_shape(name, 0)
            try:
                lo, hi = list(dims[0]), list(dims[2])
            except ValueError:  # Dims{-1}: no profile for this input, its shape is fixed
                lo = hi = list(eng.get_tensor_shape(name))
            if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                log((Logger.ERROR, f"set_input_shape: {shape} is outside the profile"))
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> Dims:
            mode, t = self.engine._tensors[name]
            if mode == TensorIOMode.INPUT:
                return Dims(self._shapes.get(name, t["shape"]))
            shapes = self._shapes
            by_symbol = {sym: size for i in self.engine._head["inputs"]
                         for sym, size in zip(i["symbols"], shapes.get(i["name"], i["shape"]))}
            return Dims([d if d >= 0 else by_symbol.get(sym, -1)
                         for d, sym in zip(t["shape"], t["symbols"])])

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if name not in self.engine._tensors or not isinstance(memory, int):
                return False
            self._addr[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not isinstance(stream_handle, int):
                raise TypeError("execute_async_v3(stream_handle: int)")
            if stream_handle == 0:
                log((Logger.WARNING, "Using default stream in enqueueV3() may lead to "
                                     "performance issues due to additional calls to "
                                     "cudaStreamSynchronize()"))
            eng, feeds = self.engine, {}
            if set(self._addr) != set(eng._tensors):
                log((Logger.ERROR, "enqueueV3: not all tensor addresses are set"))
                return False
            for t in eng._head["inputs"]:
                if t["name"] not in self._shapes and -1 in t["shape"]:
                    log((Logger.ERROR, f"enqueueV3: input shape of {t['name']} not set"))
                    return False
                shape = tuple(self.get_tensor_shape(t["name"]))
                feeds[t["name"]] = _read(self._addr[t["name"]], shape, DataType(t["dtype"]))
            for t, y in zip(eng._head["outputs"], eng._run(feeds)):
                _write(self._addr[t["name"]], y, DataType(t["dtype"]))
            return True

    for cls in (Logger, Builder, Runtime, OnnxParser, ParserError, INetworkDefinition,
                IBuilderConfig, IOptimizationProfile, ITimingCache, ICudaEngine,
                IExecutionContext):
        setattr(m, cls.__name__, cls)


def _read(addr: int, shape: tuple, dtype: DataType) -> np.ndarray:
    np_t = _NP[dtype]
    n = int(np.prod(shape)) * np.dtype(np_t).itemsize
    raw = (ctypes.c_ubyte * n).from_address(addr)
    return np.frombuffer(bytes(raw), np_t).reshape(shape)


def _write(addr: int, y: np.ndarray, dtype: DataType) -> None:
    data = np.ascontiguousarray(y.astype(_NP[dtype])).tobytes()
    ctypes.memmove(addr, data, len(data))
