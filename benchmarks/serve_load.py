"""Bounded loopback load test of `lkmseg serve` (NVIDIA Triton through PyTriton).

    .venv/bin/python benchmarks/serve_load.py RUN [--images DIR] [--n-images 16]
        [--requests 200] [--concurrency 1,2,4,8] [--protocols http,grpc] [--rounds 2]
        [--instances 1[,2]] [--json benchmarks/results/serve_load_<date>.json] [--only-load]
        [--large [6,2,4,5000]] [--only-large] [--serve-arg=--max-pixels=100000000 ...]

1. `lkmseg predict RUN` on the images: the reference masks.
2. `lkmseg serve RUN` on 127.0.0.1 (free ports), a subprocess — one per --instances value,
   all running at once, measured in turn (interleaved).
3. For each round, protocol, C clients and server (orders reversed every other round, so
   load drifts hit every setting alike): REQUESTS single-image requests from C threads, one
   tritonclient each; throughput, p50/p99 latency, Dice of every mask vs predict's, and the
   batch sizes Triton formed (statistics endpoint, before/after).
4. Bad requests — wrong dtype, wrong rank, zero-size, 20000x20000, truncated payload — each
   must get an error, and a good request must succeed after each.
5. SIGTERM while 4 clients send: answers must be whole and right (none torn), the requests
   in flight must be answered, a new client refused, and the server must exit 0.
6. With --large: C clients x R requests of B images of S x S at once (serve_memory.py); the
   peak memory of the server and all its processes (RSS and PSS sums) over its memory before,
   every answer a right mask or one line of error, and a normal request answered afterwards.
   --only-large runs only this (and the server it needs).

Every loop is bounded in count and by --time-limit. Needs the serve extra and the images
(default: $LKMSEG_CARVANA/train).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from lkmseg.data.imageio import read_image, read_mask
from lkmseg.fsutil import write_json
from lkmseg.serve.client import SegmentClient, batch_stats
from lkmseg.serve.server import free_ports

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_memory import large_load  # noqa: E402 — this folder's module

ROOT = Path(__file__).resolve().parents[1]
con = Console()


def machine() -> dict:
    """CPU model, cores, flags, memory, library versions (hw.machine_info) + the load."""
    from lkmseg.hw import machine_info

    return {**machine_info("cpu"), "loadavg_start": os.getloadavg()}


def load_images(folder: Path, n: int, work: Path) -> tuple[list[str], list[np.ndarray], Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    step = max(1, len(files) // n)
    files = files[::step][:n]  # spread over the cars
    link_dir = work / "images"
    link_dir.mkdir()
    for f in files:
        (link_dir / f.name).symlink_to(f.resolve())
    return [f.stem for f in files], [read_image(f) for f in files], link_dir


def served_engine(banner: str) -> tuple[str, str]:
    """(engine, precision) from the server's banner, e.g. 'lkmseg: openvino (int8, cpu, ...'."""
    m = re.search(r": (\w+) \((\w+),", banner)
    if m is None:
        raise SystemExit(f"cannot read the engine from the server's banner: {banner!r}")
    return m.group(1), m.group(2)


def reference_masks(run: Path, images: Path, out: Path, stems: list[str],
                    engine: tuple[str, str]) -> list[np.ndarray]:
    """`lkmseg predict` with the engine and precision the server runs (auto may choose
    differently per batch shape, and an INT8 model's masks differ from fp32's by design),
    one image per call."""
    cmd = [sys.executable, "-m", "lkmseg", "predict", str(run), str(images), "--out", str(out),
           "--no-progress", "--engine", engine[0], "--precision", engine[1], "--batch-size", "1"]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=900)
    return [read_mask(out / f"{s}.png") for s in stems]


class Serve:
    """`lkmseg serve` as a subprocess on loopback."""

    def __init__(self, run: Path, log: Path, args: argparse.Namespace,
                 instances: int | None) -> None:
        self.instances = instances  # None: serve's default, read from its banner when ready
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log_path = log
        cmd = [sys.executable, "-m", "lkmseg", "serve", str(run), "--address", "127.0.0.1",
               "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
               "--metrics-port", str(self.metrics_port), "--max-batch", str(args.max_batch),
               "--queue-delay-ms", str(args.queue_delay_ms), "--exit-timeout", "20",
               "--engine", args.engine]
        cmd += ["--instances", str(instances)] if instances is not None else []
        cmd += args.serve_arg
        self._log = open(log, "w")  # noqa: SIM115 — closed in wait()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def url(self, protocol: str) -> str:
        return f"127.0.0.1:{self.http_port if protocol == 'http' else self.grpc_port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 180) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise SystemExit(f"lkmseg serve exited:\n{self.output()[-3000:]}")
            if "SIGTERM stops the server" in self.output():
                return time.monotonic() - t0
            time.sleep(0.2)
        self.proc.kill()
        raise SystemExit(f"lkmseg serve not ready in {timeout_s}s")

    def wait(self, timeout_s: float) -> int | None:
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = None
        self._log.close()
        return code


def dice(mask: np.ndarray, ref: np.ndarray) -> float:
    if mask.shape != ref.shape:
        return 0.0
    inter = np.count_nonzero(mask & ref)
    total = np.count_nonzero(mask) + np.count_nonzero(ref)
    return 1.0 if total == 0 else 2.0 * inter / total


def phase(srv: Serve, protocol: str, conc: int, n_req: int, images: list, refs: list,
          deadline: float) -> dict:
    """n_req requests from ``conc`` threads; request i sends image i % len(images)."""
    lock, next_i = threading.Lock(), [0]
    lat, dices, errors = [], [], []
    clients = [SegmentClient(srv.url(protocol), protocol, timeout_s=120) for _ in range(conc)]
    barrier = threading.Barrier(conc + 1)

    def worker(c: SegmentClient) -> None:
        barrier.wait(60)
        while time.monotonic() < deadline:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n_req:
                return
            k = i % len(images)
            t0 = time.perf_counter()
            try:
                m = c.segment(images[k])
            except Exception as e:  # noqa: BLE001 — counted and reported, never hidden
                errors.append(f"{type(e).__name__}: {str(e)[:120]}")
                continue
            lat.append(time.perf_counter() - t0)
            dices.append(dice(m, refs[k]))

    before = batch_stats(f"http://{srv.url('http')}")
    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    barrier.wait(60)
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = batch_stats(f"http://{srv.url('http')}")
    for c in clients:
        c.close()
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"protocol": protocol, "clients": conc, "requests": len(lat), "errors": errors,
            "seconds": round(wall, 3), "throughput_rps": round(len(lat) / wall, 3),
            "latency_ms_p50": round(float(np.percentile(ms, 50)), 2),
            "latency_ms_p99": round(float(np.percentile(ms, 99)), 2),
            "dice_min": round(min(dices), 6) if dices else None,
            "dice_mean": round(float(np.mean(dices)), 6) if dices else None,
            "exact": sum(d == 1.0 for d in dices),
            "batches": {str(b): after.get(b, 0) - before.get(b, 0) for b in sorted(after)
                        if after.get(b, 0) - before.get(b, 0) > 0}}


def reason(message: str) -> str:
    """The informative line of a server error (Triton's own, or the Python exception's)."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "BadRequest:" in ln or "Error:" in ln:
            return ln[:200]
    return lines[0][:200] if lines else "?"


def truncated_http(srv: Serve) -> str:
    """A binary request whose data is half of what its header declares -> HTTP status."""
    n = 32 * 32 * 3
    head = json.dumps({"inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8",
                                   "parameters": {"binary_data_size": n}}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=60)
    try:
        conn.request("POST", "/v2/models/lkmseg/infer", head + bytes(n // 2),
                     headers={"Inference-Header-Content-Length": str(len(head))})
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
    finally:
        conn.close()
    return "ACCEPTED" if r.status == 200 else f"HTTP {r.status}: {body[:160]}"


def bad_requests(srv: Serve, good: np.ndarray) -> list[dict]:
    cases = [("wrong dtype (FP32)", lambda: np.zeros((1, 64, 64, 3), np.float32), "FP32"),
             ("wrong rank (1, H, W)", lambda: np.zeros((1, 64, 64), np.uint8), "UINT8"),
             ("zero-size (1, 0, 64, 3)", lambda: np.zeros((1, 0, 64, 3), np.uint8), "UINT8"),
             ("20000x20000", lambda: np.zeros((1, 20000, 20000, 3), np.uint8), "UINT8")]
    out = []
    for protocol in ("http", "grpc"):
        with SegmentClient(srv.url(protocol), protocol, timeout_s=300) as c:
            for name, make, dtype in cases:
                if name == "20000x20000" and protocol == "grpc":
                    continue  # 1.2 GB once is enough
                t0 = time.perf_counter()
                try:
                    c.infer(make(), datatype=dtype)
                    answer = "ACCEPTED"
                except Exception as e:  # noqa: BLE001 — the error is what we expect
                    answer = f"{type(e).__name__}: {reason(str(e))}"
                out.append(_after_bad(c, protocol, name, answer, t0, good))
            t0 = time.perf_counter()
            if protocol == "http":
                out.append(_after_bad(c, protocol, "truncated payload", truncated_http(srv),
                                      t0, good))
    return out


def _after_bad(c: SegmentClient, protocol: str, name: str, answer: str, t0: float,
               good: np.ndarray) -> dict:
    seconds = time.perf_counter() - t0
    ok_after = c.segment(good).shape == good.shape[:2]
    return {"protocol": protocol, "request": name, "error": answer != "ACCEPTED",
            "answer": answer, "seconds": round(seconds, 2), "served_next": ok_after}


def stop_in_flight(srv: Serve, image: np.ndarray, ref: np.ndarray, clients: int = 4) -> dict:
    """SIGTERM while ``clients`` threads send; then the clients stop and the server exits."""
    results: list[tuple[float, str]] = []
    go, halt = threading.Barrier(clients + 1), threading.Event()

    def worker() -> None:
        with SegmentClient(srv.url("http"), "http", timeout_s=60) as c:
            go.wait(60)
            for _ in range(2000):  # bounded in count, and by halt in time
                if halt.is_set():
                    return
                try:
                    m = c.segment(image)
                except Exception as e:  # noqa: BLE001 — refusals after the stop are expected
                    results.append((time.monotonic(), type(e).__name__))
                    return
                results.append((time.monotonic(), "ok" if dice(m, ref) >= 0.999 else "torn"))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    go.wait(60)
    time.sleep(2.0)
    t_term = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    try:
        with SegmentClient(srv.url("http"), "http", timeout_s=10) as late:
            late.segment(image)
        new_client = "ACCEPTED"
    except Exception as e:  # noqa: BLE001 — a refusal is the expected answer
        new_client = f"refused ({type(e).__name__})"
    halt.set()
    for t in threads:
        t.join(60)
    code = srv.wait(60)
    kinds = [k for _, k in results]
    return {"answered_before_sigterm": sum(k == "ok" and t <= t_term for t, k in results),
            "answered_after_sigterm": sum(k == "ok" and t > t_term for t, k in results),
            "torn": kinds.count("torn"),
            "errors": sorted({k for k in kinds if k not in ("ok", "torn")}),
            "new_client_after_sigterm": new_client, "exit_code": code,
            "exit_seconds": round(time.monotonic() - t_term, 2),
            "graceful": "Exit timeout expired" not in srv.output()}


def summarize(phases: list[dict]) -> dict:
    """Throughput per (instances, protocol, clients), summed over rounds; ratios vs 1 client."""
    agg: dict[str, dict] = {}
    for p in phases:
        key = f"{p.get('server', 'i' + str(p['instances']))}/{p['protocol']}/{p['clients']}"
        a = agg.setdefault(key, {"requests": 0, "seconds": 0.0})
        a["requests"] += p["requests"]
        a["seconds"] += p["seconds"]
    out = {k: round(v["requests"] / v["seconds"], 3) for k, v in agg.items()}
    ratios = {}
    for k, v in out.items():
        inst, proto, c = k.split("/")
        base = f"{inst}/{proto}/1"
        if base in out and c != "1":
            ratios[k] = round(v / out[base], 3)
    return {"throughput_rps": out, "speedup_vs_1_client": ratios}


def print_tables(res: dict) -> None:
    if not res["phases"]:
        return
    t = Table(title="lkmseg serve, loopback (per round)")
    for c in ("round", "inst", "protocol", "clients", "req", "req/s", "p50 ms", "p99 ms",
              "Dice min", "exact", "batch sizes (executions)", "errors"):
        t.add_column(c, justify="right")
    for p in res["phases"]:
        t.add_row(str(p["round"]), str(p["instances"]), p["protocol"], str(p["clients"]),
                  str(p["requests"]),
                  f"{p['throughput_rps']:.2f}", f"{p['latency_ms_p50']:.0f}",
                  f"{p['latency_ms_p99']:.0f}", f"{p['dice_min']}", str(p["exact"]),
                  " ".join(f"{b}:{n}" for b, n in p["batches"].items()), str(len(p["errors"])))
    con.print(t)
    con.print(res["summary"])
    b = Table(title="bad requests")
    for c in ("protocol", "request", "error", "served next", "s", "answer"):
        b.add_column(c)
    for r in res["bad_requests"]:
        b.add_row(r["protocol"], r["request"], str(r["error"]), str(r["served_next"]),
                  str(r["seconds"]), r["answer"][:110])
    con.print(b)
    for stop in res["stop"]:
        con.print({"stop while in flight": stop})


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    default_images = Path(os.environ.get("LKMSEG_CARVANA", "")) / "train"
    ap.add_argument("--images", type=Path, default=default_images)
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--protocols", default="http,grpc")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--engine", default="auto", help="lkmseg serve --engine")
    ap.add_argument("--queue-delay-ms", type=float, default=2.0)
    ap.add_argument("--instances", default="default", help="model instances; a list (1,2) "
                    "starts one server per value and interleaves their phases; 'default' "
                    "leaves lkmseg serve's own (one per core on CPU)")
    ap.add_argument("--time-limit", type=float, default=1800, help="seconds for all phases")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only-load", action="store_true", help="skip the bad-request and stop "
                    "checks (quick looks)")
    ap.add_argument("--large", nargs="?", const="6,2,4,5000", default=None, metavar="C,R,B,S",
                    help="also the large-request memory load: C clients x R requests of B "
                    "images of SxS (default 6,2,4,5000)")
    ap.add_argument("--only-large", action="store_true", help="only the large-request load")
    ap.add_argument("--min-available-gb", type=float, default=3.0, help="kill the server if "
                    "the machine's available memory falls below this during the large load")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `lkmseg serve` "
                    "option for every server, e.g. --serve-arg=--max-pixels=100000000")
    a = ap.parse_args()
    if a.only_large:
        a.large = a.large or "6,2,4,5000"
    if not a.images.is_dir():
        ap.error(f"--images {a.images}: not a folder (set LKMSEG_CARVANA or pass --images)")
    return a


def run_phases(servers: list[Serve], a: argparse.Namespace, images: list,
               refs: list) -> list[dict]:
    """Every (server, protocol, C) once per round; the C order flips every round, so drifts
    in the machine's load hit all settings alike."""
    concs = [int(c) for c in a.concurrency.split(",")]
    deadline = time.monotonic() + a.time_limit
    phases = []
    for r in range(a.rounds):
        for proto in a.protocols.split(","):
            for c in concs if r % 2 == 0 else concs[::-1]:
                for srv in servers if r % 2 == 0 else servers[::-1]:
                    if time.monotonic() > deadline:
                        con.print(f"[yellow]time limit: skipped round {r} {proto} C={c}[/]")
                        continue
                    p = phase(srv, proto, c, a.requests, images, refs, deadline)
                    p.update(round=r, instances=srv.instances, server=srv.label)
                    con.print(f"round {r} instances {srv.instances} {proto} C={c}: "
                              f"{p['throughput_rps']:.2f} req/s, p50 {p['latency_ms_p50']:.0f} "
                              f"ms, Dice min {p['dice_min']}, batches {p['batches']}")
                    phases.append(p)
    return phases


def start_servers(a: argparse.Namespace, work: Path, images: list) -> list[Serve]:
    servers = []
    for inst in (None if i == "default" else int(i) for i in a.instances.split(",")):
        srv = Serve(a.run, work / f"serve-{inst or 'default'}.log", a, inst)
        srv.startup_s = srv.wait_ready()
        srv.label = f"i{srv.instances}" if srv.instances is not None else "default"
        if srv.instances is None:
            srv.instances = int(re.search(r"(\d+) instance\(s\)", srv.output()).group(1))
            srv.label = f"default-i{srv.instances}"  # distinct from an explicit value's key
        with SegmentClient(srv.url("http")) as c:  # warm-up
            for im in images[:4]:
                c.segment(im)
        servers.append(srv)
        con.print(f"serving (startup {srv.startup_s:.1f} s): "
                  f"{srv.output().split('serving ', 1)[1].splitlines()[0]}")
    return servers


def run_large(srv: Serve, a: argparse.Namespace, normal: np.ndarray,
              engine: tuple[str, str]) -> dict:
    """The large-request load against ``srv``; masks checked against predict's own code with
    the engine and precision the server runs."""
    from lkmseg.engines import load_engine
    from lkmseg.predict import predict_arrays

    eng = load_engine(engine[0], a.run, engine[1], device="cpu")
    try:
        out = large_load(srv, a.large, normal, lambda imgs: predict_arrays(eng, list(imgs)),
                         a.min_available_gb)
    finally:
        eng.close()
    con.print({k: v for k, v in out.items() if k != "requests"})
    return out


def main() -> None:
    a = parse_args()
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                 "run": str(a.run), "settings": {k: str(v) for k, v in vars(a).items()}}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        work = Path(tmp)
        stems, images, folder = load_images(a.images, a.n_images, work)
        res["images"] = {"n": len(images), "sizes": sorted({f"{i.shape[1]}x{i.shape[0]}"
                                                             for i in images})}
        servers = start_servers(a, work, images)
        res["servers"] = [{"instances": v.instances, "startup_seconds": round(v.startup_s, 2),
                           "banner": v.output().split("serving ", 1)[1].splitlines()[0]}
                          for v in servers]
        engines = {served_engine(s["banner"]) for s in res["servers"]}
        if len(engines) != 1:
            raise SystemExit(f"the servers run different engines: {sorted(engines)}")
        res["reference"] = "lkmseg predict --engine {} --precision {} --batch-size 1".format(
            *engines.pop())
        engine = served_engine(res["servers"][0]["banner"])
        if a.large:
            res["large"] = run_large(servers[0], a, images[0], engine)
        refs = [] if a.only_large else reference_masks(a.run, folder, work / "predict", stems,
                                                       engine)
        res["phases"] = [] if a.only_large else run_phases(servers, a, images, refs)
        quick = a.only_load or a.only_large
        res["bad_requests"] = [] if quick else bad_requests(servers[0], images[0])
        res["stop"] = []
        for srv in servers:
            if quick:
                srv.proc.send_signal(signal.SIGTERM)
                srv.wait(60)
            else:
                res["stop"].append({"instances": srv.instances,
                                    **stop_in_flight(srv, images[1], refs[1])})
    res["summary"] = summarize(res["phases"])
    res["machine"]["loadavg_end"] = os.getloadavg()
    print_tables(res)
    if a.json:
        write_json(a.json, res)
        con.print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
