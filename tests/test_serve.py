"""`lkmseg serve`: one Triton server for the whole run (started once, stopped by the last test).

Covers: start (banner, readiness, loopback by default), masks equal to `lkmseg predict` over
HTTP and gRPC, logits, concurrent requests batched by Triton with each client getting its own
mask, bad requests answered with one line while the server keeps serving (and never failing a
good request batched with them), the queue policy, one float map at a time, one-line errors
(port in use, bad model, missing extra, a non-IPv4 address), the warning for an exposed
address, and SIGTERM finishing the requests in flight. Starts that fail, Ctrl-C while loading
and Triton dying: tests/test_serve_start.py.
"""

from __future__ import annotations

import http.client
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SAMPLES
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.data.transforms import logit_threshold, preprocess
from lkmseg.engines import load_engine
from lkmseg.predict import predict_arrays
from lkmseg.serve.segmenter import BadRequest, Segmenter, check_images, resize_logits
from lkmseg.serve.server import free_ports

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
QUEUE_DELAY_MS = 30  # long enough that requests sent together are batched together
MAX_SIDE = 2048  # the 20000x20000 case of the load test, at a test-sized cost
MAX_PIXELS = 2_500_000  # 2 images of 1000x1000 pass, 3 do not
MAX_QUEUE, QUEUE_TIMEOUT_S = 32, 120



class _Server:
    def __init__(self, run: Path, log: Path) -> None:
        self.run, self.log_path = run, log
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        cmd = [sys.executable, "-m", "lkmseg", "serve", str(run),  # the default address
               "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
               "--metrics-port", str(self.metrics_port), "--logits", "--max-batch", "8",
               "--queue-delay-ms", str(QUEUE_DELAY_MS), "--max-side", str(MAX_SIDE),
               "--max-pixels", str(MAX_PIXELS), "--max-queue", str(MAX_QUEUE),
               "--queue-timeout", str(QUEUE_TIMEOUT_S), "--exit-timeout", "10", "--device", "cpu"]
        self._log = open(log, "w")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lkmseg serve exited {self.proc.returncode}:\n"
                                   f"{self.output()[-3000:]}")
            if "SIGTERM stops the server" in self.output():
                return
            time.sleep(0.2)
        raise TimeoutError(f"lkmseg serve not ready after {timeout_s}s:\n{self.output()[-3000:]}")

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def served_run(run) -> Path:
    return run


@pytest.fixture(scope="session")
def server(served_run, tmp_path_factory):
    pytest.importorskip("pytriton", reason="the 'serve' extra (nvidia-pytriton) is not "
                                           "installed: pip install 'lkmseg[serve]'")
    pytest.importorskip("tritonclient.grpc", reason="the 'serve' extra (tritonclient) is not "
                                                    "installed: pip install 'lkmseg[serve]'")
    srv = _Server(served_run, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    yield srv
    srv.stop()


@pytest.fixture
def live(server):
    if server.proc.poll() is not None:
        pytest.fail("the shared server was stopped by an earlier test (the SIGTERM test must "
                    "run last)")
    return server


@pytest.fixture(scope="session")
def engine(served_run):
    return load_engine("auto", served_run, device="cpu")


def _client(srv: _Server, protocol: str = "http"):
    from lkmseg.serve.client import SegmentClient

    return SegmentClient(srv.http if protocol == "http" else srv.grpc, protocol, timeout_s=60)


def _samples() -> list[tuple[str, np.ndarray]]:
    return [(p.stem, cv2.imread(str(p))[..., ::-1].copy())
            for p in sorted((SAMPLES / "images").glob("*.jpg"))]


def test_start_banner_and_readiness(live, engine):
    out = live.output()
    for needle in (f"http://127.0.0.1:{live.http_port}/v2/models/lkmseg/infer",
                   f"127.0.0.1:{live.grpc_port}", f"127.0.0.1:{live.metrics_port}/metrics",
                   engine.name, "client.infer(\"lkmseg\""):  # auto's cached, measured choice
        assert needle in out
    from lkmseg.hw import physical_cores

    # predict's choice (the same cached measurement), one instance per core by default
    assert f"auto chose {engine.name} {engine.precision}" in out
    assert f"{min(8, physical_cores())} instance(s)" in out
    assert "warning" not in out and "localhost" not in out  # loopback: nothing to warn about
    with _client(live) as c:
        assert c.ready()


def test_listens_on_loopback_only_by_default(live):
    """Triton's three ports are bound to 127.0.0.1 (gRPC's as IPv4-mapped ::ffff:127.0.0.1),
    not to every interface."""
    import ipaddress

    import psutil

    triton = [p for p in psutil.Process(live.proc.pid).children(recursive=True)
              if p.name() == "tritonserver"]
    assert len(triton) == 1
    conns = getattr(triton[0], "net_connections", triton[0].connections)(kind="inet")
    listening = {c.laddr.port: ipaddress.ip_address(c.laddr.ip) for c in conns
                 if c.status == psutil.CONN_LISTEN}
    for port in (live.http_port, live.grpc_port, live.metrics_port):
        ip = listening[port]
        ip = getattr(ip, "ipv4_mapped", None) or ip
        assert ip == ipaddress.ip_address("127.0.0.1"), listening


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_masks_equal_lkmseg_predict(live, served_run, engine, tmp_path, protocol):
    res = runner.invoke(app, ["predict", str(served_run), str(SAMPLES / "images"), "--out",
                              str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    with _client(live, protocol) as c:
        for stem, img in _samples():
            mask, logits = c.segment(img, logits=True)
            want = (cv2.imread(str(tmp_path / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127)
            assert mask.shape == img.shape[:2] and mask.dtype == np.uint8
            assert np.array_equal(mask, want.astype(np.uint8)), stem
            assert logits.shape == img.shape[:2] and logits.dtype == np.float32
            local = resize_logits(engine(preprocess([img], engine.config.size).numpy()),
                                  [img.shape[:2]])[0]
            assert np.allclose(logits, local, atol=1e-5) and logits.std() > 0
            assert np.array_equal(logits > logit_threshold(0.5), mask.astype(bool))


def test_concurrent_requests_are_batched_and_not_mixed_up(live, engine):
    from lkmseg.serve.client import batch_stats

    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (72, 100, 3), dtype=np.uint8) for _ in range(8)]
    for i, im in enumerate(imgs):  # a different blob in each image
        cv2.circle(im, (10 + 10 * i, 36), 12, (255, 255, 255), -1)
    want = predict_arrays(engine, imgs)
    before = batch_stats(f"http://{live.http}")
    got: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(imgs))

    def one(i: int) -> None:
        with _client(live) as c:
            barrier.wait(timeout=30)
            got[i] = c.segment(imgs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(len(imgs)))
    for i in range(len(imgs)):
        assert np.array_equal(got[i], want[i]), i
    after = batch_stats(f"http://{live.http}")
    delta = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    assert sum(b * n for b, n in delta.items()) == len(imgs)
    assert max(b for b, n in delta.items() if n > 0) > 1  # Triton batched some together


def _raw_http(srv: _Server, header: dict, body: bytes, declared: int) -> tuple[int, str]:
    """POST a KServe v2 binary request whose data may be shorter than its header says."""
    head = json.dumps(header).encode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request("POST", "/v2/models/lkmseg/infer", head + body, headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


BAD_CASES = {  # name: (array, declared Triton datatype, words of the one-line answer)
    "wrong dtype": (np.zeros((1, 40, 60, 3), np.float32), "FP32", "expects 'UINT8'"),
    "wrong rank": (np.zeros((1, 40, 60), np.uint8), "UINT8", "image"),
    "zero-size": (np.zeros((1, 0, 60, 3), np.uint8), "UINT8", "is empty"),
    "too large": (np.zeros((1, MAX_SIDE + 1, 16, 3), np.uint8), "UINT8",
                  "larger than this server accepts (largest side 2048, see `lkmseg serve "
                  "--max-side`)"),
    "too many pixels": (np.zeros((3, 1000, 1000, 3), np.uint8), "UINT8",
                        f"3,000,000 pixels, more than this server accepts per request "
                        f"({MAX_PIXELS:,}, see `lkmseg serve --max-pixels`)"),
}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_one_line_and_server_keeps_serving(live, protocol):
    """Every bad request is answered 400 / INVALID_ARGUMENT with one line naming the problem
    (no traceback of the server), and the server serves the next request."""
    from tritonclient.utils import InferenceServerException

    good = np.full((1, 40, 60, 3), 128, np.uint8)
    with _client(live, protocol) as c:
        for name, (arr, dtype, words) in BAD_CASES.items():
            with pytest.raises(InferenceServerException) as err:
                c.infer(arr, datatype=dtype)
            text = err.value.message()
            assert words in text and "\n" not in text.strip(), (name, text)
            assert "Traceback" not in text and "TritonModelException" not in text, name
            assert str(err.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), name
            assert c.infer(good)["mask"].shape == (1, 40, 60), f"not serving after {name}"
        ok = c.infer(np.zeros((2, 1000, 1000, 3), np.uint8))  # at the pixel cap's side of it
        assert ok["mask"].shape == (2, 1000, 1000)
    assert "Traceback" not in live.output()  # bad requests are one line in the log, too
    n = 1 * 32 * 32 * 3
    header = {"inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8",
                          "parameters": {"binary_data_size": n}}],
              "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}
    status, text = _raw_http(live, header, bytes(n // 2), n)
    assert status == 400, text  # truncated payload: refused by Triton itself
    assert "\n" not in json.loads(text)["error"].strip()
    with _client(live, "grpc") as c:
        assert c.segment(np.full((40, 60, 3), 128, np.uint8)).shape == (40, 60)


def test_bad_request_batched_with_good_ones_fails_alone(live, engine):
    """Requests of the same image size are batched together (here within the 30 ms queue
    delay): one over the pixel cap among them gets its error, the others their masks."""
    from tritonclient.utils import InferenceServerException

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    cv2.circle(img, (400, 500), 200, (255, 255, 255), -1)
    want = predict_arrays(engine, [img])[0]
    too_many = np.repeat(img[None], 3, axis=0)  # 3 MP: over the cap, within --max-batch
    answers: dict[str, object] = {}
    barrier = threading.Barrier(4)

    def send(key: str, batch: np.ndarray) -> None:
        with _client(live) as c:
            barrier.wait(timeout=30)
            try:
                answers[key] = c.infer(batch)["mask"]
            except InferenceServerException as e:
                answers[key] = e

    jobs = {"good0": img[None], "bad": too_many, "good1": img[None], "good2": img[None]}
    threads = [threading.Thread(target=send, args=kv) for kv in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(answers["bad"], InferenceServerException)
    assert "--max-pixels" in answers["bad"].message()
    for k in ("good0", "good1", "good2"):
        assert isinstance(answers[k], np.ndarray) and np.array_equal(answers[k][0], want), k


def test_queue_policy_is_in_the_model_config(live):
    """Triton's own view of the model: a bounded queue whose requests time out (rejected)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{live.http}/v2/models/lkmseg/config", timeout=10) as r:
        cfg = json.loads(r.read())
    policy = cfg["dynamic_batching"]["default_queue_policy"]
    assert policy["max_queue_size"] == MAX_QUEUE
    assert int(policy["default_timeout_microseconds"]) == QUEUE_TIMEOUT_S * 1_000_000
    assert policy["timeout_action"] == "REJECT"
    assert cfg["max_batch_size"] == 8


def test_port_in_use_is_a_one_line_error(live, served_run):
    res = runner.invoke(app, ["serve", str(served_run), "--address", "127.0.0.1",
                              "--http-port", str(live.http_port)])
    assert res.exit_code == 2
    assert f"--http-port {live.http_port}" in res.output and "in use" in res.output
    assert "Traceback" not in res.output


def test_bad_model_and_options_are_one_line_errors(tmp_path, served_run):
    res = runner.invoke(app, ["serve", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["serve", str(served_run), "--http-port", "9000",
                              "--grpc-port", "9000"])
    assert res.exit_code == 2 and "must differ" in res.output
    res = runner.invoke(app, ["serve", str(served_run), "--max-batch", "0"])
    assert res.exit_code == 2 and "--max-batch 0" in res.output


def test_missing_extra_names_the_install_command(monkeypatch, served_run):
    monkeypatch.setitem(sys.modules, "pytriton.triton", None)  # import fails like a missing one
    res = runner.invoke(app, ["serve", str(served_run)])
    assert res.exit_code == 2
    assert "pip install 'lkmseg[serve]'" in res.output and "Traceback" not in res.output


def test_segmenter_mixed_sizes_in_one_batch_equal_predict(engine):
    """Triton batches equal shapes only, but the callable itself handles any mix."""
    rng = np.random.default_rng(0)
    sizes = [(50, 70), (120, 33), (64, 96), (9, 300)]
    reqs = [{"image": rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)} for h, w in sizes]
    seg = Segmenter(engine, logits=True)
    out = seg(reqs)
    assert len(out) == len(reqs)
    for req, resp in zip(reqs, out):
        want = predict_arrays(engine, list(req["image"]))
        assert resp["mask"].shape == req["image"].shape[:3]
        assert all(np.array_equal(m, w) for m, w in zip(resp["mask"], want))
        assert np.array_equal(resp["logits"] > logit_threshold(seg.threshold),
                              resp["mask"].astype(bool))


@pytest.mark.parametrize("arr, match", [
    (np.zeros((1, 8, 8, 3), np.float32), "UINT8"),
    (np.zeros((8, 8, 3), np.uint8), r"\(batch, height, width, 3\)"),
    (np.zeros((1, 8, 8, 4), np.uint8), r"\(batch, height, width, 3\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    (np.zeros((1, 8, 0, 3), np.uint8), "empty"),
    (np.zeros((1, 20000, 1, 3), np.uint8), "20000x1 is larger"),
    (np.zeros((5, 100, 100, 3), np.uint8), "50,000 pixels, more than this server accepts per "
                                            r"request \(40,000, see `lkmseg serve --max-pixels`"),
])
def test_check_images_refuses(arr, match):
    with pytest.raises(BadRequest, match=match):
        check_images(arr, max_side=8192, max_pixels=40_000)


def test_bad_request_marker_names_the_class():
    """The Triton model file finds a refusal in PyTriton's error text by this prefix."""
    from lkmseg.serve.limits import BAD_REQUEST

    assert f"{BadRequest.__module__}.{BadRequest.__qualname__}: " == BAD_REQUEST


def test_segmenter_holds_one_float_map_at_a_time(engine):
    """Masks of a request of large images: the float maps are thresholded one by one and
    dropped, so the peak is the masks plus about one map (all maps would be 4 x 16 MB)."""
    import tracemalloc

    b, h, w = 4, 2000, 2000
    req = {"image": np.random.default_rng(1).integers(0, 256, (b, h, w, 3), dtype=np.uint8)}
    seg = Segmenter(engine)
    seg([{"image": req["image"][:1, :64, :96]}])  # warm-up outside the measurement
    tracemalloc.start()
    try:
        out = seg([req])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    masks, one_map = b * h * w, 4 * h * w  # bytes
    assert out[0]["mask"].shape == (b, h, w) and "logits" not in out[0]
    assert peak < masks + 1.5 * one_map, f"peak {peak / 1e6:.0f} MB"
    want = predict_arrays(engine, list(req["image"]))
    assert all(np.array_equal(m, wm) for m, wm in zip(out[0]["mask"], want))


def test_loopback_by_default_and_cli_defaults_match_the_library():
    from lkmseg.cli import serve as cli_serve
    from lkmseg.serve import ServeOptions
    from lkmseg.serve.limits import MAX_PIXELS as LIB_MAX_PIXELS
    from lkmseg.serve.limits import MAX_SIDE as LIB_MAX_SIDE

    assert ServeOptions().address == "127.0.0.1"
    params = inspect.signature(cli_serve.serve_cmd).parameters
    defaults = {k: v.default for k, v in params.items()}
    assert defaults["address"] == "127.0.0.1"
    assert (defaults["max_side"], defaults["max_pixels"]) == (LIB_MAX_SIDE, LIB_MAX_PIXELS)
    o = ServeOptions()
    assert (defaults["max_queue"], defaults["queue_timeout"]) == (o.max_queue, o.queue_timeout_s)


@pytest.mark.parametrize("address, where", [("0.0.0.0", "every network interface"),
                                            ("192.168.1.20", "192.168.1.20")])
def test_exposed_address_warns_and_points_to_the_docs(address, where):
    from lkmseg.serve.address import DOCS, exposure_warning

    text = exposure_warning(address)
    assert where in text and "no authentication" in text and "no request-size limit" in text
    assert DOCS in text
    doc, anchor = DOCS.split("#")
    headings = [ln.lstrip("# ").strip().lower().replace(" ", "-")
                for ln in (ROOT / doc).read_text().splitlines() if ln.startswith("#")]
    assert anchor in headings  # the link lands on a section
    for quiet in ("127.0.0.1", "127.0.0.2"):
        assert exposure_warning(quiet) is None


def test_cli_warns_before_serving_an_exposed_address(tmp_path):
    res = runner.invoke(app, ["serve", str(tmp_path / "nope"), "--address", "0.0.0.0"])
    assert res.exit_code == 2 and "not found" in res.output  # nothing started
    assert "warning: --address 0.0.0.0" in res.output and "docs/serving.md#exposing" in res.output


@pytest.mark.parametrize("address", ["::", "::1", "localhost", "256.1.1.1"])
def test_non_ipv4_address_is_a_one_line_error(served_run, address):
    res = runner.invoke(app, ["serve", str(served_run), "--address", address])
    assert res.exit_code == 2 and f"--address {address}: give an IPv4 address" in res.output
    assert "Traceback" not in res.output


def test_libpython_link_goes_first_and_is_removed():
    from lkmseg.serve.pybackend import libpython_on_path, own_libpython

    lib = own_libpython()
    before = os.environ.get("LD_LIBRARY_PATH")
    with libpython_on_path() as folder:
        if lib is None:
            assert folder is None
            pytest.skip("this interpreter has no shared libpython (nothing to fix)")
        first = os.environ["LD_LIBRARY_PATH"].split(":")[0]
        assert Path(first) == folder and [p.name for p in folder.iterdir()] == [lib.name]
        assert (folder / lib.name).resolve() == lib.resolve()
    assert os.environ.get("LD_LIBRARY_PATH") == before and not folder.exists()


def test_reap_kills_leftovers_that_ignore_sigterm():
    """What a forced Triton exit can leave behind (a stub ignoring SIGTERM) is killed."""
    import psutil

    from lkmseg.serve.server import _reap

    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.5)  # let it install the handler
        t0 = time.monotonic()
        assert _reap([psutil.Process(child.pid)], grace_s=0.5) == [child.pid]
        assert child.wait(10) == -signal.SIGKILL and time.monotonic() - t0 < 5
    finally:
        child.kill()


def test_sigterm_finishes_in_flight_requests_then_exits(live, engine):
    """Runs last: SIGTERM while 3 clients keep sending. Triton refuses new connections,
    finishes what is in flight (and serves the open connections until they close); the
    clients stop, and the server exits 0 well before its exit timeout. No answer is torn."""
    from tritonclient.utils import InferenceServerException

    img = np.full((96, 128, 3), 40, np.uint8)
    cv2.circle(img, (64, 48), 30, (250, 250, 250), -1)
    want = predict_arrays(engine, [img])[0]
    results: list[tuple[float, str]] = []  # (time answered, "ok" | "torn" | error type)
    sending, stop_clients = threading.Barrier(4), threading.Event()
    failures = (InferenceServerException, OSError, http.client.HTTPException)

    def client() -> None:
        with _client(live) as c:
            sending.wait(timeout=30)
            for _ in range(500):  # bounded in count (and by stop_clients in time)
                if stop_clients.is_set():
                    return
                try:
                    m = c.segment(img)
                except failures as e:
                    results.append((time.monotonic(), type(e).__name__))
                    return
                results.append((time.monotonic(), "ok" if np.array_equal(m, want) else "torn"))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    sending.wait(timeout=30)
    time.sleep(0.5)
    t_term = time.monotonic()
    live.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    with pytest.raises(failures), _client(live) as late:  # a new client is turned away
        late.segment(img)
    stop_clients.set()
    for t in threads:
        t.join(60)
    code = live.stop(timeout_s=60)
    exit_s = time.monotonic() - t_term
    kinds = [k for _, k in results]
    assert code == 0 and "stopped" in live.output(), live.output()[-2000:]
    assert "torn" not in kinds and kinds.count("ok") > 0
    assert any(k == "ok" and t > t_term for t, k in results)  # in flight at SIGTERM: answered
    # graceful: Triton stopped because the requests were done, not at its 10 s exit timeout
    # (the wall time is no measure: unloading the model alone took 4 s at load average 14)
    assert "Exit timeout expired" not in live.output() and exit_s < 60


def test_default_instances_one_per_core_on_cpu_one_on_gpu(monkeypatch):
    from lkmseg import devices, hw
    from lkmseg.serve import server as srv

    monkeypatch.setattr(hw, "physical_cores", lambda: 4)
    monkeypatch.setattr(devices, "gpu_present", lambda: False)
    assert srv.default_instances("onnxruntime", "cpu") == 4
    assert srv.default_instances("openvino", "auto") == 4
    assert srv.default_instances("torch", "cpu") == 1  # one thread pool per process
    o = srv.ServeOptions(instances=4)
    assert srv._engine_kw(o, "onnxruntime") == {"threads": 1}  # the cores shared
    assert srv._engine_kw(srv.ServeOptions(instances=2), "openvino") == {"threads": 2}
    assert srv._engine_kw(srv.ServeOptions(instances=1), "onnxruntime") == {}
    assert srv._engine_kw(o, "torch") == {}
    monkeypatch.setattr(hw, "physical_cores", lambda: 64)
    assert srv.default_instances("onnxruntime", "cpu") == srv.MAX_AUTO_INSTANCES
    for dev in ("cuda", "cuda:1", "gpu", "tensorrt"):
        assert srv.default_instances("onnxruntime", dev) == 1, dev
    assert srv.default_instances("tensorrt", "auto") == 1
    assert srv._engine_kw(srv.ServeOptions(instances=2, device="cuda"), "onnxruntime") == {}
    monkeypatch.setattr(devices, "gpu_present", lambda: True)
    assert srv.default_instances("onnxruntime", "auto") == 1
    assert srv.default_instances("openvino", "auto") == 8  # OpenVINO runs on the CPU here
    assert srv.default_instances("onnxruntime", "cpu") == 8
