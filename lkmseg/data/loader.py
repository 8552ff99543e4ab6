"""Batches for training from the in-memory uint8 cache.

Batch ``step`` is a pure function of (seed, step): the epoch permutation is seeded by
(seed, epoch) and each sample's augmentation by (seed, step, its place in the global batch).
Resuming at step N therefore sees exactly the batches an uninterrupted run would, with no
RNG state to save; and N processes with batch size b, each taking its shard of the global
batch, see exactly what one process with batch size N*b sees (same images, same
augmentation, same order). A background thread (``Prefetcher``) prepares the next batches
while the model trains on the current one, where that overlaps (``prefetch_depth``).
"""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np
import torch

from lkmseg.data.transforms import augment_uint8


class BatchSource:
    def __init__(self, images: np.ndarray, masks: np.ndarray, batch_size: int, seed: int,
                 augment: bool = True, device: torch.device | str = "cpu",
                 rank: int = 0, world: int = 1) -> None:
        self.images, self.masks = images, masks  # (N, H, W, 3), (N, H, W) uint8
        self.n = images.shape[0]
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self.global_batch = batch_size * world
        self.steps_per_epoch = max(1, self.n // self.global_batch)
        self._perm_cache: tuple[int, np.ndarray] | None = None
        self._pool = None  # augmentation threads (GPU runs only)
        self.busy_s = 0.0  # time spent producing batches (loader images/s)
        self.produced = 0

    def _perm(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm_cache = (epoch, rng.permutation(self.n))
        return self._perm_cache[1]

    def indices(self, step: int) -> np.ndarray:
        """This rank's sample indices for global ``step`` (shards of one global batch)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = self._perm(epoch)
        if self.n < self.global_batch:  # tiny data: wrap around
            perm = np.resize(perm, self.global_batch)
            k = 0
        glob = perm[k * self.global_batch:(k + 1) * self.global_batch]
        return glob[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def sample_seed(self, step: int, position: int) -> int:
        """Seed of the augmentation of the sample at ``position`` in global batch ``step``."""
        ss = np.random.SeedSequence([self.seed % 2**63, step, position])
        return int(ss.generate_state(1, np.uint64)[0]) >> 1  # NumPy 1.x: no uint64 >> int

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) float in [0, 1] and (B, 1, H, W) float {0, 1} on ``device``."""
        t0 = time.perf_counter()
        idx = self.indices(step)  # in global-batch order: shards concatenate to the batch
        imgs, msks = self.images[idx], self.masks[idx]
        if self.augment:  # seeded per sample, so it does not depend on the rank
            first = self.rank * self.batch_size
            seeds = [self.sample_seed(step, first + i) for i in range(len(idx))]
            pairs = list(self._map(augment_uint8, imgs, msks, seeds))
            imgs = np.stack([a for a, _ in pairs])
            msks = np.stack([b for _, b in pairs])
        img = torch.from_numpy(imgs).to(self.device, non_blocking=True)
        msk = torch.from_numpy(msks).to(self.device, non_blocking=True)
        # contiguous NCHW: a permuted view would carry channels_last strides into the model
        # (its convolutions then answer in channels_last and BatchNorm's backward took 12x
        # longer: a 3x3 step at 256x256 bf16 0.41 s instead of 0.33 s)
        img = img.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        msk = msk[:, None].float()
        self.busy_s += time.perf_counter() - t0
        self.produced += img.shape[0]
        return img, msk

    def _map(self, fn, *its):
        """Serial on a CPU (the training thread: no core is spare); on a GPU, a pool of
        threads (OpenCV releases the GIL), so one loader thread can feed it."""
        if self.device.type != "cuda":
            return map(fn, *its)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max(1, min(8, (os.cpu_count() or 2) - 1)),
                                            thread_name_prefix="lkmseg-augment")
        return self._pool.map(fn, *its)

    def close(self) -> None:
        """Stop the augmentation threads (GPU runs), waiting for them."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def images_per_s(self) -> float:
        return self.produced / self.busy_s if self.busy_s > 0 else float("nan")


class Prefetcher:
    """Produce batches ``start, start+1, ...`` in a background thread, ``depth`` ahead."""

    def __init__(self, source: BatchSource, start: int, depth: int = 2) -> None:
        self.source = source
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.step = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, step: int) -> None:
        while not self._stop.is_set():
            try:
                item = (step, self.source.batch(step))
            except BaseException as e:  # noqa: BLE001 — re-raised in the consumer
                item = (step, e)
            while not self._stop.is_set():
                try:
                    self.q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += 1

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        step, item = self.q.get()
        if isinstance(item, BaseException):
            raise item
        assert step == self.step, "prefetcher out of order"
        self.step += 1
        return item

    def close(self) -> None:
        """Stop the thread and wait for it (it ends within one batch): a thread still running
        torch code while the interpreter exits can abort the process."""
        self._stop.set()
        self._thread.join()


def prefetch_depth(workers: int | None, device: torch.device) -> tuple[int, str]:
    """(batches a background thread prepares ahead, why): ``--workers`` when given; else
    ahead on a GPU (CPU work overlaps GPU work) or where torch leaves a CPU core spare, and in
    the training thread when torch's threads use every core. The loader's tensor ops run in
    an OpenMP team of their own, so a loader thread on busy cores preempts the training
    threads, which wait for each other at every parallel region
    (experiments/2026-11-26-loader-thread)."""
    if workers is not None:
        return workers, f"--workers {workers}"
    if device.type == "cuda":
        return 2, "auto: a loader thread prepares 2 batches ahead while the GPU trains"
    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    if cores > threads:
        return 2, (f"auto: a loader thread prepares 2 batches ahead on the {cores - threads} "
                   f"core(s) torch's {threads} threads leave spare")
    return 0, (f"auto: batches are made in the training thread (torch's {threads} threads use "
               f"all {cores} cores; a loader thread would contend with them)")
