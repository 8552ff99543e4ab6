"""The large-request load of `benchmarks/serve_load.py --large`: memory of `lkmseg serve`.

C clients each send R requests of B images of S x S pixels (default 6 x 2 x 4 x 5000x5000) at
once, over HTTP with KServe v2 binary data, each request's body sent straight from one shared
array (the load test's own memory stays one batch of images). While they run, the memory of
the server and every process it started is sampled: the sum of RSS (shared pages counted in
each process that touched them, as `ps` shows it) and of PSS (each shared page split between
its processes: what the server costs the machine). Every client must get masks equal to the
reference or one line of error, and the server must answer a normal request afterwards.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import numpy as np
import psutil

HEADER = "Inference-Header-Content-Length"


def synthetic_batch(n: int, side: int, seed: int = 0) -> np.ndarray:
    """(n, side, side, 3) uint8: smooth noise with a bright disc per image (masks with
    something in them, different per image)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        out[i] = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
        cv2.circle(out[i], (side // 3 + i * side // 10, side // 2), side // 5, (250, 250, 250), -1)
    return out


def infer_raw(host: str, port: int, images: np.ndarray, model: str = "lkmseg",
              timeout_s: float = 900) -> tuple[int, np.ndarray | None, str]:
    """One binary KServe v2 request -> (HTTP status, masks or None, error text or '')."""
    head = json.dumps({"inputs": [{"name": "image", "shape": list(images.shape),
                                   "datatype": "UINT8",
                                   "parameters": {"binary_data_size": images.nbytes}}],
                       "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}).encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.putrequest("POST", f"/v2/models/{model}/infer")
        for k, v in (("Content-Type", "application/octet-stream"), (HEADER, str(len(head))),
                     ("Content-Length", str(len(head) + images.nbytes))):
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(head)
        conn.send(memoryview(np.ascontiguousarray(images)).cast("B"))
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    if r.status != 200:
        try:
            text = json.loads(body)["error"]
        except (ValueError, KeyError):
            text = body.decode(errors="replace")
        return r.status, None, text
    n = int(r.getheader(HEADER))
    masks = np.frombuffer(body, np.uint8, offset=n).reshape(images.shape[:3])
    return r.status, masks, ""


class MemorySampler(threading.Thread):
    """Samples RSS and PSS (bytes) summed over ``pid`` and all its descendants."""

    def __init__(self, pid: int, period_s: float = 0.25, min_available_gb: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.root, self.period_s = psutil.Process(pid), period_s
        self.min_available = min_available_gb * 1024**3
        self.killed_low_memory = False  # the machine ran low: the server was killed
        self.samples: list[tuple[float, int, int]] = []  # (time, rss, pss)
        self.peaks: dict[str, dict[str, int]] = {}  # process -> peak rss, pss, shared
        self._halt = threading.Event()

    def sample(self) -> tuple[int, int]:
        rss = pss = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                m, name = p.memory_full_info(), f"{p.name()}-{p.pid}"
            except psutil.Error:  # exited meanwhile
                continue
            rss, pss = rss + m.rss, pss + m.pss
            peak = self.peaks.setdefault(name, {"rss": 0, "pss": 0, "shared": 0})
            for k in peak:
                peak[k] = max(peak[k], getattr(m, k))
        return rss, pss

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.samples.append((time.monotonic(), *self.sample()))
            if psutil.virtual_memory().available < self.min_available:
                self._kill_server()  # a shared machine: never push others into the OOM killer
                return

    def _kill_server(self) -> None:
        self.killed_low_memory = True
        for p in [*self.root.children(recursive=True), self.root]:
            try:
                p.kill()
            except psutil.Error:
                continue

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def large_load(srv, spec: str, normal_image: np.ndarray, reference,  # noqa: ANN001
               min_available_gb: float = 3.0) -> dict:
    """``spec`` 'C,R,B,S' (clients, requests each, images per request, side). ``reference``:
    images -> masks as `lkmseg predict` makes them (None: only shapes are checked). The
    server is killed if the machine's available memory falls below ``min_available_gb``."""
    clients, per_client, batch, side = (int(x) for x in spec.split(","))
    images = synthetic_batch(batch, side)
    want = reference(images) if reference is not None else None
    sampler = MemorySampler(srv.proc.pid, min_available_gb=min_available_gb)
    base_rss, base_pss = sampler.sample()
    results: list[dict] = []
    go = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        go.wait(120)
        for j in range(per_client):
            t0 = time.perf_counter()
            try:
                status, masks, text = infer_raw("127.0.0.1", srv.http_port, images)
            except (OSError, http.client.HTTPException) as e:
                status, masks, text = 0, None, f"{type(e).__name__}: {e}"
            ok = masks is not None and (want is None or all(
                np.array_equal(m, w) for m, w in zip(masks, want)))
            results.append({"client": k, "request": j, "status": status, "masks_equal": ok,
                            "error": text, "one_line": "\n" not in text.strip(),
                            "seconds": round(time.perf_counter() - t0, 2)})

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    sampler.start()
    go.wait(120)
    t0 = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    sampler.stop()
    if sampler.killed_low_memory:
        status, masks, text = 0, None, "server killed: the machine ran low on memory"
    else:
        status, masks, text = infer_raw("127.0.0.1", srv.http_port, normal_image[None],
                                        timeout_s=120)
    after_rss, after_pss = sampler.sample()
    peak_rss = max((s[1] for s in sampler.samples), default=base_rss)
    peak_pss = max((s[2] for s in sampler.samples), default=base_pss)
    gb = 1 / 1024**3
    return {"spec": {"clients": clients, "requests_per_client": per_client,
                     "images_per_request": batch, "side": side,
                     "request_mb": round(images.nbytes / 2**20, 1)},
            "seconds": round(wall, 1), "samples": len(sampler.samples),
            "killed_low_memory": sampler.killed_low_memory,
            "rss_gb": {"before": round(base_rss * gb, 2), "peak": round(peak_rss * gb, 2),
                       "growth": round((peak_rss - base_rss) * gb, 2),
                       "after": round(after_rss * gb, 2)},
            "pss_gb": {"before": round(base_pss * gb, 2), "peak": round(peak_pss * gb, 2),
                       "growth": round((peak_pss - base_pss) * gb, 2),
                       "after": round(after_pss * gb, 2)},
            "peak_gb_per_process": {k: {m: round(v * gb, 2) for m, v in d.items()}
                                    for k, d in sampler.peaks.items()},
            "answers": {"masks": sum(r["masks_equal"] for r in results),
                        "errors": sum(r["status"] != 200 for r in results),
                        "wrong_masks": sum(r["status"] == 200 and not r["masks_equal"]
                                           for r in results),
                        "errors_one_line": all(r["one_line"] for r in results),
                        "distinct_errors": sorted({r["error"][:200] for r in results
                                                   if r["error"]})},
            "next_normal_request": "ok" if status == 200 and masks is not None
            else f"HTTP {status}: {text[:200]}",
            "requests": results}
