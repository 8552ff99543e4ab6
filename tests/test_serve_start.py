"""`lkmseg serve` starting, failing to start, being interrupted and losing its Triton.

- PyTriton's handshake between a model's instances connects once, within a second: the cause
  of the failed starts (an instance asks before the first one's socket exists, or between its
  bind and listen). The Triton model file waits for the handshake instead: a first instance
  three seconds late still loads.
- A start whose model does not load is tried again; one that never loads is one line (exit 2);
  only a model Triton calls ready is served.
- A bug in the inference callable: the client gets one line, the log keeps the traceback.
- Triton dying while serving: one line, exit 5. Ctrl-C while loading: one line, exit 130.

Servers here run in this process on 127.0.0.1 with free ports, each bounded in time.
"""

from __future__ import annotations

import http.client
import importlib
import json
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.serve.server import free_ports

pytest.importorskip("pytriton", reason="the 'serve' extra (nvidia-pytriton) is not installed")
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
INITIALIZE = "    def initialize(self, args: dict) -> None:\n"


@pytest.fixture(scope="module")
def served_run(run) -> Path:
    return run


def _options(**kw):
    from lkmseg.serve import ServeOptions

    http, grpc, metrics = free_ports(3)
    return ServeOptions(engine="onnxruntime", device="cpu", instances=2, http_port=http,
                        grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5, **kw)


def _inject(monkeypatch, code_for_attempt) -> list[int]:
    """Prepend ``code_for_attempt(i)`` (Python run in every instance's ``initialize``, ``args``
    in scope) to the Triton model file sent at start attempt i; returns the attempts seen."""
    from lkmseg.serve import binding

    real, seen = binding.triton_model_source, []

    def source() -> bytes:
        seen.append(len(seen))
        code = textwrap.indent(code_for_attempt(seen[-1]) + "\n", " " * 8)
        return real().decode().replace(INITIALIZE, INITIALIZE + code).encode()

    assert INITIALIZE in real().decode()
    monkeypatch.setattr(binding, "triton_model_source", source)
    return seen


def _tritonservers() -> list:
    """The tritonserver processes this process started (PyTriton runs them as children)."""
    import psutil

    return [p for p in psutil.Process().children() if p.name() == "tritonserver"]


# ------------------------------------------------------------------- the handshake, unit


def _triton_model_package(tmp_path: Path, served_run: Path):
    """The files Triton gets for the model, imported as a package the way the Python backend
    does (its utils module is pure Python until the stub fills it in)."""
    import pytriton
    from pytriton.decorators import TritonContext
    from pytriton.utils.workspace import Workspace

    from lkmseg.serve.binding import make_model

    backend = Path(pytriton.__file__).parent / "tritonserver" / "backends" / "python"
    model = make_model(_options(), [lambda reqs: reqs], Workspace(tmp_path / "ws"),
                       TritonContext())
    name = f"triton_model_{tmp_path.name}"  # one package per test
    pkg = tmp_path / "pkgroot" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for key, data in model.get_proxy_model_files().items():
        (pkg / key.split("/", 1)[1]).write_bytes(data)
    sys.path[:0] = [str(tmp_path / "pkgroot"), str(backend)]
    try:
        return importlib.import_module(f"{name}.model"), model
    finally:
        del sys.path[:2]


def test_pytriton_handshake_fails_fast_and_the_model_file_waits(tmp_path, served_run):
    """Cause and fix without Triton: PyTriton's ``get_config_from_handshake_server`` fails
    with ConnectionRefusedError on a socket bound but not yet listening, and with
    TimeoutError on one that is not there after a second; ``wait_for_handshake`` returns once
    the first instance's real HandshakeServer answers, 1.5 s late."""
    mod, model = _triton_model_package(tmp_path, served_run)
    from pytriton.proxy.communication import HandshakeServer, get_config_from_handshake_server

    path = Path(tempfile.mkdtemp(prefix="hs")) / "m-config.sock"  # AF_UNIX: a short path
    with pytest.raises(TimeoutError):
        get_config_from_handshake_server(path, timeout_s=1.0)
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # what asyncio.start_unix_server does before listen()
    with pytest.raises(ConnectionRefusedError):
        get_config_from_handshake_server(path, timeout_s=1.0)

    server: list[HandshakeServer] = []

    def first_instance_late() -> None:
        time.sleep(1.5)
        bound.close()
        path.unlink()
        server.append(HandshakeServer(path, {"authkey": "k", "data_socket": "d"}))
        server[0].start()

    t = threading.Thread(target=first_instance_late)
    t0 = time.monotonic()
    t.start()
    try:
        mod.wait_for_handshake(path, timeout_s=30)
        waited = time.monotonic() - t0
        assert get_config_from_handshake_server(path, timeout_s=1.0)["authkey"] == "k"
    finally:
        t.join(10)
        if server:
            server[0].close()
    assert 1.4 < waited < 20
    cfg = json.loads(model.get_model_config()["parameters"]["lkmseg"]["string_value"])
    assert cfg["handshake_wait_s"] > 1 and cfg["max_pixels"] == _options().max_pixels


def test_failed_execution_is_classified_in_one_line(tmp_path, served_run):
    mod, _ = _triton_model_package(tmp_path, served_run)
    from lkmseg.serve.limits import BAD_REQUEST

    bad = f"Traceback (most recent call last):\n  File ...\n{BAD_REQUEST}image 9x9 too big\n\nAt:"
    assert mod.reason(bad) == (True, "image 9x9 too big")
    bug = "Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero\n"
    ok, line = mod.reason(bug)
    assert not ok and "bug" in line and "\n" not in line and "ZeroDivision" not in line


# ---------------------------------------------------------------- starts, end to end


def test_first_instance_late_still_loads_and_without_the_wait_fails_in_one_line(
        monkeypatch, served_run):
    """Instance 0 starts its handshake server 3 s late (a busy machine): the other instance
    waits and the model loads. With the wait off (PyTriton's own 1 s), the same start fails,
    and a start that never loads is a one-line UserError (exit 2)."""
    from lkmseg.errors import UserError
    from lkmseg.serve import Server, binding
    from lkmseg.serve.client import SegmentClient

    late = 'import time\nif args["model_instance_name"].endswith("_0"):\n    time.sleep(3)'
    _inject(monkeypatch, lambda i: late)
    o = _options(start_attempts=1)
    with Server(served_run, o), SegmentClient(f"127.0.0.1:{o.http_port}") as c:
        assert c.ready()
        assert c.segment(np.full((40, 60, 3), 200, np.uint8)).shape == (40, 60)
    monkeypatch.setattr(binding, "HANDSHAKE_WAIT_S", 0.0)
    with pytest.raises(UserError) as err:
        Server(served_run, _options(start_attempts=1)).start()
    text = str(err.value)
    assert "did not load the model in 1 attempt(s)" in text and "\n" not in text
    # PyTriton's handshake gave up (or Triton crashed cleaning up after it: seen here too)
    assert any(w in text for w in ("TimeoutError: Timeout occurred while waiting for config",
                                   "ConnectionRefusedError", "HTTPConnectionClosed")), text
    assert not _tritonservers()


def test_failed_start_is_retried_a_bug_is_one_line_and_triton_dying_exits_5(
        monkeypatch, served_run, caplog):
    """`lkmseg serve`: attempt 1 fails to load (injected), attempt 2 serves; a request that
    hits a bug in the callable gets one line (the log keeps the traceback) and the next is
    served; Triton killed while serving -> one line, exit 5."""
    from tritonclient.utils import InferenceServerException

    from lkmseg.serve import segmenter
    from lkmseg.serve.client import SegmentClient

    seen = _inject(monkeypatch, lambda i: 'raise RuntimeError("injected")' if i == 0 else "")
    real_call = segmenter.Segmenter.__call__

    def call(self, requests):  # noqa: ANN001, ANN202
        if int(requests[0]["image"][0, 0, 0, 0]) == 13:
            raise ZeroDivisionError("injected bug")
        return real_call(self, requests)

    monkeypatch.setattr(segmenter.Segmenter, "__call__", call)
    o = _options()
    found: dict = {}

    def client() -> None:
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not found.get("ready"):
                time.sleep(0.3)
                try:
                    with SegmentClient(f"127.0.0.1:{o.http_port}", timeout_s=5) as c:
                        found["ready"] = c.ready()
                except (OSError, http.client.HTTPException, InferenceServerException):
                    continue  # not up yet, or the first attempt failing (connection closed)
            with SegmentClient(f"127.0.0.1:{o.http_port}") as c:
                try:
                    c.infer(np.full((1, 20, 30, 3), 13, np.uint8))  # the poison
                except InferenceServerException as e:
                    found["bug"] = (e.message(), str(e.status()))
                found["after"] = c.segment(np.full((20, 30, 3), 90, np.uint8)).shape
        finally:
            for p in _tritonservers():
                p.kill()  # what the out-of-memory killer does

    args = ["serve", str(served_run), "--engine", "onnxruntime", "--device", "cpu",
            "--instances", "2", "--http-port", str(o.http_port), "--grpc-port",
            str(o.grpc_port), "--metrics-port", str(o.metrics_port), "--exit-timeout", "5"]
    t = threading.Thread(target=client)
    with caplog.at_level(logging.WARNING, logger="pytriton.proxy.inference"):
        t.start()
        res = runner.invoke(app, args)
        t.join(60)
    assert seen == [0, 1], res.output  # two start attempts
    assert "starting it again (attempt 2 of 3)" in res.output
    assert found.get("ready") and found.get("after") == (20, 30), (found, res.output[-2000:])
    message, status = found["bug"]
    assert status in ("500", "StatusCode.INTERNAL") and "\n" not in message.strip()
    assert "bug" in message and "Traceback" not in message and "ZeroDivision" not in message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" in logged and "ZeroDivisionError: injected bug" in logged
    assert res.exit_code == 5, res.output[-2000:]
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output[-4000:]
    assert errors[0].startswith("error: Triton Inference Server stopped while serving")
    assert "Traceback" not in res.output.split("SIGTERM stops")[1]
    assert not _tritonservers()


# ------------------------------------------------------------------- Ctrl-C while loading


def test_ctrl_c_while_loading_exits_130_with_one_line(served_run):
    """SIGINT while the engines load (here: a load that takes a minute) -> one line and the
    shell's code for an interrupted command, not click's 'Aborted!' and 1."""
    code = textwrap.dedent(f"""
        import sys, time
        import lkmseg.engines as engines
        def slow(*a, **k):
            print("loading", flush=True)
            time.sleep(60)
        engines.load_engine = slow
        sys.argv = ["lkmseg", "serve", {str(served_run)!r}, "--http-port", "{free_ports(1)[0]}"]
        from lkmseg.cli.app import main
        main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "loading"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted before serving began" in err and "Aborted" not in out + err
    assert "Traceback" not in err
