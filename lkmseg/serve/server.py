"""Start NVIDIA Triton Inference Server (through PyTriton) with an lkmseg model bound to it.

    with Server("runs/1x5", ServeOptions(http_port=8000)) as srv:   # started, model ready
        print(srv.endpoints)

The engines are loaded (and ``auto`` measured) before Triton starts; a start counts only once
Triton says the model itself is ready, and a failed start is tried again. ``serve()`` is the
blocking form behind ``lkmseg serve``: it returns after SIGINT or SIGTERM, once Triton has
finished the requests in flight (new ones are refused meanwhile).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lkmseg import devices
from lkmseg.errors import ServerDied, UserError
from lkmseg.serve.address import LOOPBACK, check_address
from lkmseg.serve.binding import bind, check_pytriton
from lkmseg.serve.contract import MODEL_NAME, check_extra
from lkmseg.serve.limits import BAD_REQUEST, MAX_PIXELS, MAX_SIDE
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
    address: str = LOOPBACK  # this machine only; 0.0.0.0: every interface (see docs/serving.md)
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    queue_delay_ms: float = 2.0
    instances: int | None = None  # None: one per physical core on CPU, 1 on a GPU
    logits: bool = False
    threshold: float | None = None  # default: the model's
    max_side: int = MAX_SIDE
    max_pixels: int = MAX_PIXELS  # per request (all its images)
    max_queue: int = 8  # requests waiting for an instance; more are refused at once
    queue_timeout_s: float = 60.0  # a request waiting longer is refused
    model_name: str = MODEL_NAME
    exit_timeout_s: int = 30  # how long a stop waits for requests in flight
    start_attempts: int = 3  # a start whose model does not load is tried this often


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
    check_address(o.address)
    checks = [("--max-batch", o.max_batch, 1, 1024), ("--instances", o.instances or 1, 1, 64),
              ("--max-side", o.max_side, 16, 65536), ("--exit-timeout", o.exit_timeout_s, 0, 3600),
              ("--max-pixels", o.max_pixels, 256, 2**40), ("--max-queue", o.max_queue, 1, 100_000),
              ("--queue-delay-ms", o.queue_delay_ms, 0, 10_000),
              ("--queue-timeout", o.queue_timeout_s, 0.001, 86_400),
              ("start_attempts", o.start_attempts, 1, 100)]
    for opt, v, lo, hi in checks:
        if not lo <= v <= hi:
            raise UserError(f"{opt} {v}: must be between {lo} and {hi}")
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
    if engine == "tensorrt":
        return True
    return devices.is_gpu(devices.resolve(device, engines=True))


def default_instances(engine: str, device: str) -> int:
    """Instances when --instances is not given, for the engine that will run (auto already
    resolved): one per physical core on a CPU for ONNX Runtime and OpenVINO, each with that
    core's threads — requests of different clients then run side by side, pre- and
    post-processing included; one on a GPU, which batches instead, and one for torch, whose
    threads are one pool per process."""
    from lkmseg.hw import physical_cores

    if engine == "torch" or _on_gpu(engine, device):
        return 1
    return max(1, min(MAX_AUTO_INSTANCES, physical_cores()))


def _engine_kw(o: ServeOptions, engine: str) -> dict[str, Any]:
    """Share the cores between instances instead of each one taking all of them (the
    engines that take a thread count)."""
    from lkmseg.hw import physical_cores

    if (o.instances or 1) > 1 and engine in ("onnxruntime", "openvino") and not _on_gpu(
            engine, o.device):
        return {"threads": max(1, physical_cores() // o.instances)}
    return {}


def _shorten_tracebacks(record: logging.LogRecord) -> bool:
    """PyTriton logs a failed request with its whole traceback: a bad request's is cut to its
    last line (the reason, e.g. ``BadRequest: image 20000x20000 is larger...``); any other
    failure is a bug and keeps its traceback."""
    msg = record.getMessage()
    if "Traceback (most recent call last)" in msg and BAD_REQUEST in msg:
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
        check_pytriton()
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
        self.segmenters = [Segmenter(e, o.threshold, o.logits, o.max_side, o.max_pixels)
                           for e in self.engines]
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
        """Where the server listens (the address it was given, not a guess)."""
        o = self.options
        return {"http": f"http://{o.address}:{o.http_port}", "grpc": f"{o.address}:{o.grpc_port}",
                "metrics": f"http://{o.address}:{o.metrics_port}/metrics",
                "model": o.model_name}

    def start(self, stop: threading.Event | None = None) -> Server:
        """Start Triton and load the model; a start whose model does not become ready is
        stopped and tried again, up to ``start_attempts`` times, then a UserError says why.
        KeyboardInterrupt when ``stop`` is set before the model is ready (Ctrl-C reaches
        Triton too: it is in this process's group)."""
        logging.getLogger("pytriton.proxy.inference").addFilter(_shorten_tracebacks)
        self._env.enter_context(libpython_on_path())
        attempts = self.options.start_attempts
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self._start_once()
                except StartFailed as e:
                    self._stop_triton()
                    if stop is not None and stop.is_set():
                        raise KeyboardInterrupt from e
                    if attempt == attempts:
                        raise UserError(f"Triton Inference Server did not load the model in "
                                        f"{attempts} attempt(s) ({e}); its log above says why"
                                        ) from e
                    print(f"warning: Triton Inference Server did not load the model ({e}); "
                          f"starting it again (attempt {attempt + 1} of {attempts})",
                          file=sys.stderr)
                    continue
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                return self
        except BaseException:
            self.stop()
            raise
        return self

    def _start_once(self) -> None:
        from pytriton.client.exceptions import PyTritonClientError
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
        from tritonclient.utils import InferenceServerException

        o = self.options
        cfg = TritonConfig(http_address=o.address, http_port=o.http_port,
                           grpc_address=o.address, grpc_port=o.grpc_port,
                           metrics_address=o.address, metrics_port=o.metrics_port,
                           exit_timeout_secs=o.exit_timeout_s, log_verbose=0)
        self._triton = Triton(config=cfg,
                              security_config=TritonSecurityConfig(restricted_endpoints=RESTRICTED))
        bind(self._triton, o, self.segmenters)
        try:  # starts tritonserver, loads the model, connects the instances to it
            self._triton.run()
        except (OSError, http.client.HTTPException, InferenceServerException,
                PyTritonClientError) as e:  # a timeout, a refusal, a model that did not load
            raise StartFailed(_one_line(e)) from e
        self._procs.update((p.pid, p) for p in _descendants())
        if not model_ready(self.options):
            raise StartFailed(f"model '{o.model_name}' is not ready")

    def is_alive(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    def _stop_triton(self) -> None:
        """Stop Triton (it finishes the requests in flight first, up to ``exit_timeout_s``) and
        whatever it left behind."""
        if self._triton is not None:
            self._procs.update((p.pid, p) for p in _descendants())
            self._triton.stop()
            self._triton = None
        _reap(list(self._procs.values()))
        self._procs = {}

    def stop(self) -> None:
        """Stop Triton, then release the engines."""
        self._stop_triton()
        self._env.close()
        for e in self.engines:
            e.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StartFailed(Exception):
    """Triton started but the model did not become ready (this attempt)."""


def _one_line(e: BaseException) -> str:
    """The reason in a failed start's exception, whose text may hold a stub's traceback: its
    last ``SomeError: message`` line other than the wrappers', else its first line."""
    text = str(e)
    found = [m for m in re.findall(r"\b\w+(?:Error|Exception): [^\n]*\S", text)
             if not m.startswith(("TritonModelException", "InferenceServerException"))
             and not m.endswith("Traceback (most recent call last):")]
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {found[-1] if found else first}"[:300]


def model_ready(o: ServeOptions, timeout_s: float = 10.0) -> bool:
    """Whether Triton says the model (not just the server) is ready: /v2/models/NAME/ready."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    host = "127.0.0.1" if o.address == "0.0.0.0" else o.address
    client = httpclient.InferenceServerClient(f"{host}:{o.http_port}",
                                              connection_timeout=timeout_s,
                                              network_timeout=timeout_s)
    try:
        return bool(client.is_model_ready(o.model_name))
    except (OSError, http.client.HTTPException, InferenceServerException):
        return False
    finally:
        client.close()


def serve(model: str | Path, options: ServeOptions | None = None,
          on_ready: Callable[[Server], None] | None = None,
          stop: threading.Event | None = None, poll_s: float = 0.5) -> None:
    """Serve ``model`` until SIGINT/SIGTERM (or ``stop`` is set). KeyboardInterrupt when that
    comes before the model is ready; ServerDied when Triton exits on its own while serving
    (killed, out of memory, crashed)."""
    stop = stop or threading.Event()
    server = Server(model, options)  # Ctrl-C here (loading, measuring): KeyboardInterrupt
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start(stop)
        try:
            if on_ready is not None:
                on_ready(server)
            while not stop.wait(poll_s):
                if not server.is_alive():
                    raise ServerDied("Triton Inference Server stopped while serving (killed, "
                                     "out of memory or crashed: its log above says which); "
                                     "lkmseg serve stopped")
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
