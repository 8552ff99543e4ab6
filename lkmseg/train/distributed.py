"""Multi-process training on torch.distributed: rank-0-first set-up, the few collectives the
loop needs, and the ``lkmseg train --nproc N`` launcher.

What makes N processes with batch size b train exactly like one process with batch size
N*b (tests/test_distributed.py checks it): both see the same global batches (BatchSource),
each sample's augmentation depends on its place in the global batch, not on the rank; the
loss is a mean over pixels and images, and DDP averages gradients over equal shards; with
``--sync-bn`` BatchNorm normalises with global-batch statistics (without it each process uses
its own shard's, which is the usual DDP behaviour but not the single-process result); every
decision that depends on wall time (learning rate under --time-budget, validation, stopping)
is taken from values all ranks agree on (``all_max``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from lkmseg.errors import EXIT_BAD_INPUT, EXIT_GATE, EXIT_PEER, LkmsegError, PeerFailed, UserError

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """(rank, world size): from the process group if joined, else from torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def decide_on_rank0(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result (picklable) to every rank. If it fails
    on rank 0, rank 0 re-raises and the other ranks raise PeerFailed."""
    if not _joined():
        return fn()
    if dist.get_rank() == 0:
        try:
            value = fn()
        except LkmsegError as e:
            dist.broadcast_object_list([("error", str(e))], src=0)
            raise
        except BaseException as e:
            dist.broadcast_object_list([("error", f"rank 0 failed ({type(e).__name__})")], src=0)
            raise
        dist.broadcast_object_list([("ok", value)], src=0)
        return value
    box: list = [None]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise PeerFailed(value)
    return value


def rank0_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then on the other ranks (e.g. rank 0 builds the data cache,
    the others then read it). A failure on rank 0 stops every rank."""
    if not _joined():
        return fn()
    held: dict[str, T] = {}

    def on_rank0() -> None:
        held["value"] = fn()

    decide_on_rank0(on_rank0)
    return held["value"] if dist.get_rank() == 0 else fn()


def all_max(values: list[float], device: torch.device) -> list[float]:
    """Element-wise maximum over ranks (the identity in a single process)."""
    if not _joined():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): what rank 0 saves
    is then what every rank evaluates."""
    if not _joined():
        return
    for b in model.buffers():
        dist.broadcast(b.data, src=0)


# ---------------------------------------------------------------------------- synchronised BN


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the incoming gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks).

    torch's SyncBatchNorm refuses CPU modules under DDP, so this is its CPU/gloo twin: two
    differentiable all-reduces (sum and count, then the sum of squared deviations) give the
    exact mean and biased variance of the global batch; their backward all-reduces the
    gradients the same way SyncBatchNorm does. Same parameter and buffer names as
    BatchNorm2d, so checkpoints are interchangeable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        if not self.training or not _joined():
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        xf = x.float()
        n_local = torch.tensor([xf.numel() / xf.shape[1]], device=x.device)
        total = all_reduce(torch.cat([xf.sum((0, 2, 3)), n_local]))
        n = total[-1]
        mean = total[:-1] / n
        dev = xf - mean[None, :, None, None]
        var = all_reduce((dev * dev).sum((0, 2, 3))) / n  # biased, as BatchNorm normalises
        y = dev * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (n / (n - 1).clamp_min(1))
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y.to(x.dtype)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> global-batch statistics across ranks: torch's SyncBatchNorm on CUDA,
    GlobalBatchNorm2d elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum,
                                    child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_sync_bn(child, device)
    return model


# ---------------------------------------------------------------------------- the launcher


def _worker_pids() -> list[int]:
    """Our child processes running lkmseg (the workers the elastic agent started)."""
    me = os.getpid()
    try:
        import psutil

        return [c.pid for c in psutil.Process(me).children()
                if "lkmseg" in " ".join(c.cmdline())]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 — a child that vanished while we looked
        return []
    pids = []
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"lkmseg" in cmd:
            pids.append(int(d))
    return pids


class _LaunchAborted(Exception):
    pass


_forwarded: list[int] = []  # stop signals passed on to the workers by this launcher


@contextlib.contextmanager
def _forward_stop_signals() -> Iterator[None]:
    """Ctrl-C / SIGTERM reach the launcher (workers run in their own sessions): pass them
    on to the workers, which checkpoint and exit 0, so the launch ends normally."""

    def forward(signum: int, frame: object) -> None:
        pids = _worker_pids()
        if not pids:
            raise _LaunchAborted(signum)
        _forwarded.append(signum)
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


_STOPPED_BY_AGENT = (-signal.SIGTERM, -signal.SIGKILL)  # how the agent stops the survivors


def _root_failure(e) -> tuple[int, int]:
    """(rank, exit code) of the process that failed first for a reason of its own. Not the
    cause: processes that stopped because a peer failed (exit EXIT_PEER), and those the
    elastic agent itself terminated once another one had failed (it records their SIGTERM /
    SIGKILL among the failures too)."""
    codes = {r: f.exitcode for r, f in sorted(e.failures.items())}
    for skip in ((EXIT_PEER, *_STOPPED_BY_AGENT), (EXIT_PEER,)):
        own = {r: c for r, c in codes.items() if c not in skip}
        if own:
            rank = next(iter(own))
            return rank, own[rank]
    rank, failure = e.get_first_failure()
    return rank, failure.exitcode


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m lkmseg <argv>`` in ``nproc`` processes under torchrun's elastic agent
    (standalone rendezvous on a free port); returns the exit code for this command."""
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    except ImportError as e:
        raise UserError(f"--nproc {nproc}: this torch build lacks torch.distributed ({e}); "
                        "use --nproc 1") from e
    handled = "SIGHUP,SIGQUIT"  # SIGINT/SIGTERM: forwarded by us, not turned into a crash
    kw = {"min_nodes": 1, "max_nodes": 1, "nproc_per_node": nproc,
          "run_id": str(uuid.uuid4()), "rdzv_backend": "c10d",
          "rdzv_endpoint": "localhost:0", "max_restarts": 0, "monitor_interval": 0.1}
    if "signals_to_handle" in {f.name for f in dataclasses.fields(LaunchConfig)}:
        kw["signals_to_handle"] = handled
    os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = handled  # read by older torch versions
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of oversubscribing
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        with _forward_stop_signals():
            elastic_launch(LaunchConfig(**kw), sys.executable)("-u", "-m", "lkmseg", *argv)
    except ChildFailedError as e:
        rank, code = _root_failure(e)
        if code in (EXIT_BAD_INPUT, EXIT_GATE):  # the worker printed its one-line message
            return code
        if _forwarded:  # stopped before its training loop could checkpoint
            print("interrupted before training started; nothing to resume", file=sys.stderr)
            return 130
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        print(f"error: training process rank {rank} failed ({why}); see its output above",
              file=sys.stderr)
        return code if code > 0 else 1
    except _LaunchAborted:
        print("interrupted before training started", file=sys.stderr)
        return 130
    return 0
