"""Start NVIDIA Triton Inference Server (through PyTriton) with an lkmseg model bound to it.

    with Server("runs/1x5", ServeOptions(http_port=8000)) as srv:   # started, model ready
        print(srv.endpoints)

``serve()`` is the blocking form behind ``lkmseg serve``: it returns after SIGINT or SIGTERM,
once Triton has finished the requests in flight (new ones are refused meanwhile).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lkmseg.errors import LkmsegError, UserError
from lkmseg.serve.contract import INPUT, LOGITS, MASK, MAX_SIDE, MODEL_NAME, check_extra
from lkmseg.serve.pybackend import libpython_on_path
from lkmseg.serve.segmenter import Segmenter

# Endpoints PyTriton 0.7 puts behind an access token by default. Statistics stays open: it is
# read-only (like the metrics port) and the load test reads the batch sizes Triton formed.
RESTRICTED = ["shared-memory", "model-repository", "trace", "logging"]


@dataclass
class ServeOptions:
    engine: str = "auto"
    precision: str | None = None
    device: str = "auto"
    address: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    queue_delay_ms: float = 2.0
    instances: int | None = None  # None: one per physical core on CPU, 1 on a GPU
    logits: bool = False
    threshold: float | None = None  # default: the model's
    max_side: int = MAX_SIDE
    model_name: str = MODEL_NAME
    exit_timeout_s: int = 30  # how long a stop waits for requests in flight


def _check_options(o: ServeOptions) -> None:
    import re

    ports = {"--http-port": o.http_port, "--grpc-port": o.grpc_port,
             "--metrics-port": o.metrics_port}
    for opt, port in ports.items():
        if not 1 <= port <= 65535:
            raise UserError(f"{opt} {port}: choose a port between 1 and 65535")
    if len(set(ports.values())) < 3:
        raise UserError("--http-port, --grpc-port and --metrics-port must differ, got "
                        + ", ".join(f"{k[2:]} {v}" for k, v in ports.items()))
    checks = [("--max-batch", o.max_batch, 1, 1024), ("--instances", o.instances or 1, 1, 64),
              ("--max-side", o.max_side, 16, 65536), ("--exit-timeout", o.exit_timeout_s, 0, 3600)]
    for opt, v, lo, hi in checks:
        if not lo <= v <= hi:
            raise UserError(f"{opt} {v}: must be between {lo} and {hi}")
    if not 0 <= o.queue_delay_ms <= 10_000:
        raise UserError(f"--queue-delay-ms {o.queue_delay_ms}: must be between 0 and 10000")
    if o.threshold is not None and not 0 < o.threshold < 1:
        raise UserError(f"--threshold {o.threshold}: must be between 0 and 1 (exclusive)")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", o.model_name):
        raise UserError(f"--name {o.model_name!r}: use letters, digits, '.', '_' and '-' only")


def free_ports(n: int, address: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the OS says are free on ``address`` now (for tests and benchmarks
    that start servers; another process may still take one before it is bound)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((address, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def check_port_free(address: str, port: int, option: str) -> None:
    """UserError when ``port`` cannot be bound on ``address`` (in use, or not allowed)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            why = ("already in use (another server?)" if e.errno == errno.EADDRINUSE
                   else e.strerror or str(e))
            raise UserError(f"{option} {port} on {address}: {why}; choose another port") from e


MAX_AUTO_INSTANCES = 8


def _on_gpu(engine: str, device: str) -> bool:
    if engine == "openvino":
        return False
    if engine == "tensorrt" or device in ("cuda", "gpu", "tensorrt") or device.startswith("cuda:"):
        return True
    if device == "auto":
        from lkmseg.engines.factory import _gpu_present

        return _gpu_present()
    return False


def default_instances(engine: str, device: str) -> int:
    """Instances when --instances is not given, for the engine that will run (auto already
    resolved): one per physical core on a CPU for ONNX Runtime and OpenVINO, each with that
    core's threads — requests of different clients then run side by side, pre- and
    post-processing included; one on a GPU, which batches instead, and one for torch, whose
    threads are one pool per process."""
    from lkmseg.engines.onnxruntime_engine import physical_cores

    if engine == "torch" or _on_gpu(engine, device):
        return 1
    return max(1, min(MAX_AUTO_INSTANCES, physical_cores()))


def _engine_kw(o: ServeOptions, engine: str) -> dict[str, Any]:
    """Share the cores between instances instead of each one taking all of them (the
    engines that take a thread count)."""
    from lkmseg.engines.onnxruntime_engine import physical_cores

    if (o.instances or 1) > 1 and engine in ("onnxruntime", "openvino") and not _on_gpu(
            engine, o.device):
        return {"threads": max(1, physical_cores() // o.instances)}
    return {}


def _shorten_tracebacks(record: logging.LogRecord) -> bool:
    """PyTriton logs a failed request with its whole traceback: keep the last line (the
    reason, e.g. ``BadRequest: image 20000x20000 is larger...``)."""
    msg = record.getMessage()
    if "Traceback (most recent call last)" in msg:
        head = msg.split("Traceback", 1)[0].rstrip(": \n")
        tail = msg.strip().splitlines()[-1]
        record.msg, record.args = f"{head}: {tail}", None
    return True


def _descendants() -> list[Any]:
    """The tritonserver processes this process started, with their own children (the
    Python-backend stubs and what they spawned); nothing else of ours."""
    import psutil

    out = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.name() == "tritonserver":
                    out += [p, *p.children(recursive=True)]
    return out


def _reap(procs: list[Any], grace_s: float = 5.0) -> list[int]:
    """Kill what is left of ``procs`` (processes this server started). A forced Triton exit
    (exit timeout expired) can orphan a Python-backend stub, which ignores SIGTERM."""
    import psutil

    alive = [p for p in procs if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return [p.pid for p in alive]


class Server:
    """Triton with one lkmseg model; a context manager (start on enter, stop on exit)."""

    def __init__(self, model: str | Path, options: ServeOptions | None = None) -> None:
        from lkmseg.engines import canonical_name, load_engine, resolve_model

        self.options = o = options or ServeOptions()
        _check_options(o)
        check_extra()
        for opt, port in (("--http-port", o.http_port), ("--grpc-port", o.grpc_port),
                          ("--metrics-port", o.metrics_port)):
            check_port_free(o.address, port, opt)
        src = resolve_model(model)
        name = canonical_name(o.engine)
        if name == "auto" and o.instances != 1:
            # auto chooses as `lkmseg predict` does (all cores, cached per machine), so the
            # server runs predict's engine and precision; instances then get their share
            chosen = load_engine("auto", src, o.precision, o.device)
            if o.instances is None:
                o.instances = default_instances(chosen.name, chosen.device)
            kw = _engine_kw(o, chosen.name)
            first = [] if kw else [chosen]
            if kw:
                chosen.close()
            self.engines = first + [
                load_engine(chosen.name, src, chosen.precision, chosen.device, **kw)
                for _ in range(o.instances - len(first))]
            for e in self.engines:
                e.auto_choice, e.skipped = chosen.auto_choice, chosen.skipped
        else:
            if o.instances is None:
                o.instances = default_instances(name, o.device)
            kw = _engine_kw(o, name)
            self.engines = [load_engine(o.engine, src, o.precision, o.device, **kw)
                            for _ in range(o.instances)]
        self.segmenters = [Segmenter(e, o.threshold, o.logits, o.max_side) for e in self.engines]
        self.config = self.engines[0].config
        self.threshold = self.segmenters[0].threshold
        self._triton: Any = None
        self._env = contextlib.ExitStack()
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process: what start() spawned

    @property
    def engine(self) -> str:
        return self.engines[0].describe()

    @property
    def endpoints(self) -> dict[str, str]:
        o = self.options
        host = "localhost" if o.address in ("0.0.0.0", "::") else o.address
        return {"http": f"http://{host}:{o.http_port}", "grpc": f"{host}:{o.grpc_port}",
                "metrics": f"http://{host}:{o.metrics_port}/metrics",
                "model": o.model_name}

    def _bind(self, triton: Any) -> None:
        import numpy as np
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        o = self.options
        outputs = [Tensor(name=MASK, dtype=np.uint8, shape=(-1, -1))]
        if o.logits:
            outputs.append(Tensor(name=LOGITS, dtype=np.float32, shape=(-1, -1)))
        batcher = DynamicBatcher(max_queue_delay_microseconds=round(o.queue_delay_ms * 1000))
        fns = self.segmenters if len(self.segmenters) > 1 else self.segmenters[0]
        triton.bind(model_name=o.model_name, infer_func=fns,
                    inputs=[Tensor(name=INPUT, dtype=np.uint8, shape=(-1, -1, 3))],
                    outputs=outputs, strict=True,
                    config=ModelConfig(max_batch_size=o.max_batch, batcher=batcher))

    def start(self) -> Server:
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        o = self.options
        logging.getLogger("pytriton.proxy.inference").addFilter(_shorten_tracebacks)
        self._env.enter_context(libpython_on_path())
        cfg = TritonConfig(http_address=o.address, http_port=o.http_port,
                           grpc_address=o.address, grpc_port=o.grpc_port,
                           metrics_address=o.address, metrics_port=o.metrics_port,
                           exit_timeout_secs=o.exit_timeout_s, log_verbose=0)
        self._triton = Triton(config=cfg,
                              security_config=TritonSecurityConfig(restricted_endpoints=RESTRICTED))
        try:
            self._bind(self._triton)
            self._triton.run()  # starts tritonserver, loads the model, waits until it is ready
        except TimeoutError as e:  # PyTriton's answer when tritonserver exits while starting
            self.stop()
            raise UserError("Triton Inference Server did not become ready (its log above says "
                            "why: e.g. a port taken since the check, or a model that failed to "
                            "load); fix that and start again") from e
        except BaseException:
            self.stop()
            raise
        self._procs = {p.pid: p for p in _descendants()}
        return self

    def is_alive(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    def stop(self) -> None:
        """Stop Triton (it finishes the requests in flight first, up to ``exit_timeout_s``),
        then release the engines."""
        if self._triton is not None:
            self._procs.update((p.pid, p) for p in _descendants())
            self._triton.stop()
            self._triton = None
        _reap(list(self._procs.values()))
        self._procs = {}
        self._env.close()
        for e in self.engines:
            e.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(model: str | Path, options: ServeOptions | None = None,
          on_ready: Callable[[Server], None] | None = None,
          stop: threading.Event | None = None, poll_s: float = 0.5) -> None:
    """Serve ``model`` until SIGINT/SIGTERM (or ``stop`` is set, or Triton dies)."""
    stop = stop or threading.Event()
    server = Server(model, options)
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            if on_ready is not None:
                on_ready(server)
            while not stop.wait(poll_s):
                if not server.is_alive():
                    raise LkmsegError("Triton Inference Server exited unexpectedly; see its "
                                      "log above")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
