"""The training loop: ``train_run()`` makes or resumes a run folder; ``evaluate()`` scores it.

Stop criteria: --steps, --epochs or --time-budget (wall clock of the run, resumes included),
whichever is given. Batches are a pure function of (seed, step), so --resume continues
exactly where the last checkpoint stopped.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lkmseg import __version__, hw
from lkmseg.config import RunConfig
from lkmseg.data.loader import BatchSource, Prefetcher
from lkmseg.data.transforms import logit_threshold
from lkmseg.errors import PeerFailed, UserError
from lkmseg.files import run_folder as ckpt
from lkmseg.files.cache import cache_root
from lkmseg.files.run_claim import RunClaim, claim_new_run, claim_run, default_run_name
from lkmseg.fsutil import explain_os_error, remove_stale_temps, write_json
from lkmseg.metrics import dice_per_image
from lkmseg.models import build_model, count_params
from lkmseg.train import step as train_step
from lkmseg.train.distributed import (
    all_max,
    broadcast_buffers,
    convert_sync_bn,
    decide_on_rank0,
    rank0_first,
)
from lkmseg.train.init_weights import init_from
from lkmseg.train.logs import TRAIN_FIELDS, VAL_FIELDS, CsvLog
from lkmseg.train.runtime import (
    Runtime,
    choose_precision_layout,
    describe_choice,
    init_distributed,
    resolve_device,
)
from lkmseg.train.tracking import TensorBoard, write_results_png

MAX_BAD_STEPS = 20


@dataclass
class Data:
    train_images: np.ndarray  # (N, H, W, 3) uint8
    train_masks: np.ndarray  # (N, H, W) uint8
    val_images: np.ndarray
    val_masks: np.ndarray
    val_items: list = field(default_factory=list)  # Items (full-resolution evaluation)


@dataclass
class State:
    step: int = 0
    elapsed_s: float = 0.0
    best_dice: float = -1.0
    best_step: int = -1
    last_dice: float = float("nan")
    step_time_s: float = 0.0  # time inside training steps (excludes validation, saving)
    bad_steps: int = 0
    skipped_steps: int = 0


def total_steps(cfg: RunConfig, steps_per_epoch: int) -> int | None:
    t = cfg.train
    if t.steps is not None:
        return int(t.steps)
    if t.epochs is not None:
        return int(t.epochs) * steps_per_epoch
    return None if t.time_budget_s else 10 * steps_per_epoch


def lr_at(cfg: RunConfig, progress: float) -> float:
    """Linear warm-up then cosine decay to 1 % of --lr, over progress in [0, 1]."""
    t = cfg.train
    p = min(max(progress, 0.0), 1.0)
    if p < t.warmup_frac:
        return t.lr * (0.1 + 0.9 * p / t.warmup_frac)
    q = (p - t.warmup_frac) / max(1e-9, 1 - t.warmup_frac)
    return t.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * q)))


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, masks: np.ndarray, rt: Runtime,
             batch_size: int = 16, threshold: float = 0.5) -> float:
    """Mean per-image Dice (threshold on probability) of this rank's shard, all-reduced."""
    was_training = model.training
    model.eval()
    idx = np.arange(rt.rank, len(images), rt.world)
    total = torch.zeros(2, dtype=torch.float64)
    cut = math.log(threshold / (1 - threshold))
    for s in range(0, len(idx), batch_size):
        b = idx[s:s + batch_size]
        x = torch.from_numpy(images[b]).to(rt.device).permute(0, 3, 1, 2).float().div_(255)
        x = x.contiguous(memory_format=torch.channels_last if rt.channels_last
                         else torch.contiguous_format)
        with rt.autocast():
            logits = model(x)
        y = torch.from_numpy(masks[b]).to(rt.device)[:, None]
        d = dice_per_image(logits.float() > cut, y)
        total += torch.tensor([d.sum().item(), len(b)], dtype=torch.float64)
    if rt.world > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return float(total[0] / max(total[1], 1))


def _check_optimizer_state(opt: torch.optim.Optimizer, sd: object, where: Path) -> None:
    """UserError unless ``sd`` is an optimizer state for exactly these parameter groups."""
    fix = "does not match config.json; start a new run or restore the file"
    groups = sd.get("param_groups") if isinstance(sd, dict) else None
    if not isinstance(groups, list) or not isinstance(sd.get("state"), dict):
        raise UserError(f"{where}: optimizer state is malformed; {fix}")
    want = [len(g["params"]) for g in opt.param_groups]
    have = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups]
    if want != have:
        raise UserError(f"{where}: optimizer state has parameter groups {have}, this model "
                        f"needs {want}; {fix}")


def _progress(p: object, where: Path) -> dict:
    keys = ("step", "elapsed_s", "best_dice", "best_step", "last_dice")
    if not isinstance(p, dict) or not all(isinstance(p.get(k), (int, float)) for k in keys):
        raise UserError(f"{where}: training progress ({', '.join(keys)}) is missing or not "
                        "numeric; start a new run or restore the file")
    return p


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits at the next step."""

    REPEAT_S = 1.0  # a repeat this soon is the same request (a launcher forwarding it too)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._at = 0.0
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. called from a worker)
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            if time.monotonic() - self._at < self.REPEAT_S:
                return
            raise KeyboardInterrupt  # a second Ctrl-C: give up waiting
        self.signal, self._at = signum, time.monotonic()

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _agree(flag: bool, rt: Runtime) -> bool:
    """All ranks stop together: any rank's flag stops everyone."""
    if rt.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _recorded_choice(run_dir: Path) -> dict | None:
    """The precision/layout a run recorded at its start (config.json "runtime"), if any."""
    import json

    try:
        rec = json.loads((run_dir / "config.json").read_text()).get("runtime")
    except (OSError, ValueError, AttributeError):
        return None  # load_config already vetted the file; no record only costs a measurement
    return rec if isinstance(rec, dict) else None


def _build_runtime(cfg: RunConfig, device_name: str, model: nn.Module,
                   notify=None, previous: dict | None = None) -> Runtime:
    rank, world, local = init_distributed(device_name)
    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t = cfg.train
    # DDP needs the same precision and parameter layout on every rank: rank 0's choice (its
    # measurement, or the cached one) decides for all.
    choice = decide_on_rank0(lambda: choose_precision_layout(
        t.amp, str(t.channels_last), model, device, (t.batch_size, *cfg.size),
        cache_file=cache_root() / "autotune.json", notify=notify, previous=previous))
    return Runtime.from_choice(device, choice, rank, world)


class Trainer:
    """One run: model, optimizer, data source, logs and state, rank-aware."""

    def __init__(self, cfg: RunConfig, run_dir: Path, data, device: str,
                 resume: bool, console) -> None:
        self.cfg, self.run_dir, self.data, self.console = cfg, run_dir, data, console
        self.error: UserError | None = None  # a rank-0 write that failed (see _io)
        torch.manual_seed(cfg.train.seed)
        fresh = not resume and not cfg.train.init  # pretrained encoder weights only then
        model = build_model(cfg.model, pretrained=fresh)
        if cfg.train.init and not resume:
            init_from(model, cfg.train.init)
        self.rt = rt = _build_runtime(cfg, device, model,
                                      console.print if console is not None else None,
                                      _recorded_choice(run_dir) if resume else None)
        if rt.world > 1 and cfg.train.sync_bn:
            model = convert_sync_bn(model, rt.device)
        model = model.to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.opt = train_step.optimizer(model, cfg.train.lr, cfg.train.weight_decay)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.use_scaler)
        self.state = State()
        if resume:
            self._load_state()
        self.net = model
        if rt.world > 1:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        self.source = BatchSource(data.train_images, data.train_masks, cfg.train.batch_size,
                                  cfg.train.seed, cfg.train.augment, rt.device, rt.rank, rt.world)
        self.prefetch = prefetch_depth(cfg.train.workers, rt.device)
        self.total = total_steps(cfg, self.source.steps_per_epoch)
        self.tlog = self.vlog = None
        if rt.is_main:  # only rank 0 writes files
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise explain_os_error(run_dir, e) from e
            if resume:
                remove_stale_temps(run_dir)  # left by a process killed while saving
            keep = self.state.step if resume else None
            self.tlog = CsvLog(run_dir / "train_log.csv", TRAIN_FIELDS, keep)
            self.vlog = CsvLog(run_dir / "val_log.csv", VAL_FIELDS, keep)
        self.tb = (TensorBoard(run_dir, self.state.step if resume else None, self.warn)
                   if rt.is_main and cfg.train.tensorboard else None)

    def warn(self, msg: str) -> None:
        if not self.rt.is_main:
            return
        if self.console is not None:
            self.console.print(f"[yellow]warning: {msg}[/]")
        else:
            print(f"warning: {msg}", file=sys.stderr)

    def _load_state(self) -> None:
        d = self.run_dir
        if not any((d / f).is_file() for f in (ckpt.STATE, ckpt.LAST, ckpt.BEST)):
            # stopped (e.g. killed) before its first checkpoint: nothing to lose by restarting
            self.warn(f"{d}: no checkpoint yet; training this run from step 0")
            return
        st = ckpt.load_state(d)
        where = d / ckpt.STATE
        ckpt.check_state_dict(self.model, st["model"], where)
        _check_optimizer_state(self.opt, st["optimizer"], where)
        s = _progress(st["progress"], where)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.state = State(step=int(s["step"]), elapsed_s=float(s["elapsed_s"]),
                           step_time_s=float(s.get("step_time_s", 0.0)),
                           best_dice=float(s["best_dice"]), best_step=int(s["best_step"]),
                           last_dice=float(s["last_dice"]))
        world_then = int(s.get("world_size", 1))
        if world_then != self.rt.world:
            self._rebatch(world_then)

    def _rebatch(self, world_then: int) -> None:
        """Resuming with another number of processes: keep the global batch (and so the
        sequence of batches) by changing the per-process batch size."""
        t, world = self.cfg.train, self.rt.world
        glob = t.batch_size * world_then
        if glob % world:
            raise UserError(f"{self.run_dir}: trained with {world_then} process(es) x batch "
                            f"{t.batch_size}; resume with --nproc {world_then} (or a number of "
                            f"processes that divides the global batch {glob})")
        self.warn(f"resuming a {world_then}-process run with {world} process(es): "
                  f"batch size per process {t.batch_size} -> {glob // world} "
                  f"(global batch {glob} unchanged)")
        t.batch_size = glob // world

    # ---------------------------------------------------------------- progress & stopping

    def progress(self) -> float:
        p = 0.0
        if self.total:
            p = max(p, self.state.step / self.total)
        if self.cfg.train.time_budget_s:
            p = max(p, self.state.elapsed_s / self.cfg.train.time_budget_s)
        return p

    def done(self) -> bool:
        return self.progress() >= 1.0

    def val_due(self, last_val_step: int, last_val_time: float) -> bool:
        """Validation falls on multiples of the interval (steps, or seconds under a time
        budget), so a resumed run validates where an uninterrupted one would."""
        t, st = self.cfg.train, self.state
        if t.val_every or (self.total and not t.time_budget_s):
            every = t.val_every or max(1, self.total // 10)
            return st.step // every > last_val_step // every
        every = (t.time_budget_s or 600) / 10
        return st.elapsed_s // every > last_val_time // every

    def sync(self, stop: _StopFlag) -> bool:
        """Make all ranks agree before they decide anything: on a stop request (any rank's),
        on the elapsed time (the slowest rank's: learning rate, validation and the end of a
        --time-budget run depend on it) and on a failed write (any rank's). Returns True
        when training should stop for a signal."""
        flags = all_max([float(stop.signal is not None), self.state.elapsed_s,
                         float(self.error is not None)], self.rt.device)
        self.state.elapsed_s = flags[1]
        if flags[2] > 0:
            if self.error is not None:
                raise self.error
            raise PeerFailed("another training process failed")
        return flags[0] > 0

    def _io(self, fn, *args, **kw) -> None:
        """Run a rank-0 write. Under DDP its UserError (disk full...) is held until the next
        ``sync`` so that every rank stops there together instead of waiting forever."""
        try:
            fn(*args, **kw)
        except UserError as e:
            if self.rt.world == 1:
                raise
            self.error = self.error or e

    # ---------------------------------------------------------------- one step

    def step(self, pf: Prefetcher | None = None) -> tuple[float, float]:
        """The next batch (from ``pf`` or made here) and one training step: (loss, seconds).
        What ``run_loop`` times as a step."""
        t0 = time.perf_counter()
        x, y = pf.next() if pf else self.source.batch(self.state.step)
        loss = self.train_step(x, y)
        dt = time.perf_counter() - t0
        self.state.step += 1
        self.state.step_time_s += dt
        return loss, dt

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward, backward, optimizer step; returns the loss (NaN if the step was skipped)."""
        rt = self.rt
        lr = lr_at(self.cfg, self.progress())
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss = train_step.forward_loss(self.net, train_step.layout(x, rt.channels_last), y,
                                       rt.amp_dtype)
        self.opt.zero_grad(set_to_none=True)
        if _agree(not bool(torch.isfinite(loss.detach()).item()), rt):
            self.state.bad_steps += 1
            self.state.skipped_steps += 1
            self.warn(f"non-finite loss at step {self.state.step}; step skipped")
            if self.state.bad_steps >= MAX_BAD_STEPS:
                self.checkpoint()
                raise UserError(f"loss was NaN/inf for {MAX_BAD_STEPS} steps in a row "
                                f"(step {self.state.step}); lower --lr or use --amp off, "
                                f"then --resume {self.run_dir}")
            return float("nan")
        self.state.bad_steps = 0
        train_step.update(loss, self.opt, self.scaler)
        return float(loss.detach())

    def log_step(self, loss: float, images_per_s: float, elapsed_s: float) -> None:
        if self.tlog is not None:
            st = self.state
            self._io(self.tlog.write, step=st.step, epoch=st.step / self.source.steps_per_epoch,
                     elapsed_s=round(elapsed_s, 3), images_per_s=round(images_per_s, 2),
                     loss=loss, lr=self.opt.param_groups[0]["lr"])
        if self.tb is not None:
            self.tb.train_step(self.state.step, loss, self.opt.param_groups[0]["lr"],
                               images_per_s)

    # ---------------------------------------------------------------- validation & saving

    def validate(self) -> float:
        d, rt = self.data, self.rt
        broadcast_buffers(self.model)  # evaluate (and save) rank 0's BatchNorm statistics
        dice = evaluate(self.net if rt.world == 1 else self.model, d.val_images,
                        d.val_masks, rt, threshold=self.cfg.threshold)
        st = self.state
        st.last_dice = dice
        if dice > st.best_dice:
            st.best_dice, st.best_step = dice, st.step
        if rt.is_main:
            self._io(self._write_val, dice)
        return dice

    def _write_val(self, dice: float) -> None:
        st = self.state
        seen = st.step * self.cfg.train.batch_size * self.rt.world
        self.vlog.write(step=st.step, elapsed_s=round(st.elapsed_s, 3), dice=dice,
                        images_seen=seen, epoch=st.step / self.source.steps_per_epoch)
        if st.best_step == st.step:
            ckpt.save_weights(self.run_dir / ckpt.BEST, self.model,
                              {"step": st.step, "dice": dice, "block": self.cfg.model.block})
        if self.tb is not None:
            self.tb.validation(st.step, dice, self.data.val_images, self.data.val_masks,
                               self._predict, logit_threshold(self.cfg.threshold))

    @torch.no_grad()
    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the (unwrapped) model in eval mode for a float (B, 3, H, W) batch."""
        was_training = self.model.training
        self.model.eval()
        with self.rt.autocast():
            out = self.model(x.to(self.rt.device).contiguous(
                memory_format=torch.channels_last if self.rt.channels_last
                else torch.contiguous_format))
        self.model.train(was_training)
        return out

    def checkpoint(self) -> None:
        """Write last weights and the full training state (rank 0, atomically)."""
        if self.rt.is_main:
            self._io(self._write_checkpoint)

    def _write_checkpoint(self) -> None:
        st = self.state
        ckpt.save_weights(self.run_dir / ckpt.LAST, self.model, {"step": st.step})
        ckpt.save_state(self.run_dir, {
            "model": ckpt.model_state(self.model), "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.rt.use_scaler else {},
            "progress": {"step": st.step, "elapsed_s": st.elapsed_s,
                         "step_time_s": st.step_time_s, "best_dice": st.best_dice,
                         "best_step": st.best_step, "last_dice": st.last_dice,
                         "world_size": self.rt.world}})

    def close(self) -> None:
        self.source.close()
        for log in (self.tlog, self.vlog):
            if log:
                log.close()
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def evaluate_full_res(model: nn.Module, items: list, size: tuple[int, int],
                      threshold: float = 0.5, device: torch.device | str = "cpu") -> float:
    """Mean Dice at each image's original resolution (logits upsampled bilinearly)."""
    from lkmseg.data.imageio import read_image, read_mask
    from lkmseg.data.transforms import postprocess, preprocess

    model.eval()
    scores = []
    for it in items:
        img, gt = read_image(it.image), read_mask(it.mask)
        logits = model(preprocess([img], size).to(device))
        pred = postprocess(logits, [img.shape[:2]], threshold)[0]
        scores.append(float(dice_per_image(torch.from_numpy(pred)[None],
                                           torch.from_numpy(gt)[None])[0]))
    return float(np.mean(scores)) if scores else float("nan")


def _summary(tr: Trainer, status: str, loader_ips: float, full_res: float | None) -> dict:
    st, cfg, rt = tr.state, tr.cfg, tr.rt
    images = st.step * cfg.train.batch_size * rt.world
    return {
        "block": cfg.model.block, "kernel": cfg.model.spec.kernel,
        "family": cfg.model.spec.family, "params": count_params(tr.model),
        "best_val_dice": st.best_dice, "best_step": st.best_step, "last_val_dice": st.last_dice,
        "val_dice_full_res": full_res,
        "images_per_s": images / st.step_time_s if st.step_time_s else None,
        "loader_images_per_s": loader_ips, "train_seconds": st.elapsed_s,
        "step_seconds": st.step_time_s, "steps": st.step, "images_seen": images,
        "epochs": st.step / tr.source.steps_per_epoch, "skipped_steps": st.skipped_steps,
        "size": list(cfg.size), "batch_size": cfg.train.batch_size, "world_size": rt.world,
        "device": rt.describe(), "precision": rt.choice.precision,
        "channels_last": rt.channels_last, "precision_why": rt.choice.why,
        "prefetch_batches": tr.prefetch[0], "prefetch_why": tr.prefetch[1], "status": status,
        "lkmseg": __version__,
        "torch": torch.__version__, "machine": hw.machine_info(rt.device),
    }


def _bar(console, total: float, by_time: bool):
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    unit = "[progress.percentage]{task.percentage:>3.0f}%" if by_time else \
        "{task.fields[step]}/{task.total:.0f}"
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(unit),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("loss {task.fields[loss]:.4f} | {task.fields[ips]:.1f} img/s | "
                               "val dice {task.fields[dice]:.4f}"),
                    console=console, transient=False, disable=console is None)


def prefetch_depth(workers: int | None, device: torch.device) -> tuple[int, str]:
    """(batches a background thread prepares ahead, why): ``--workers`` when given; else
    ahead on a GPU (CPU work overlaps GPU work) or where torch leaves a CPU core spare, and in
    the training thread when torch's threads use every core. The loader's tensor ops run in
    an OpenMP team of their own, so a loader thread on busy cores preempts the training
    threads, which wait for each other at every parallel region
    (experiments/2026-11-26-loader-thread)."""
    import os

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


def run_loop(tr: Trainer, stop: _StopFlag, bar, task) -> str:
    """Train until done or stopped; returns "complete" or "interrupted"."""
    st, cfg, rt = tr.state, tr.cfg, tr.rt
    depth = tr.prefetch[0]
    pf = Prefetcher(tr.source, st.step, depth=depth) if depth else None
    last_val = (st.step, st.elapsed_s)
    ips, t_prev = float("nan"), time.perf_counter()
    status = "complete"
    try:
        tr.model.train()
        while True:
            stopping = tr.sync(stop)  # every rank takes the decisions below identically
            if tr.done():
                break
            if stopping:
                status = "interrupted"
                break
            loss, dt = tr.step(pf)
            n = cfg.train.batch_size * rt.world
            ips = n / dt if math.isnan(ips) else 0.8 * ips + 0.2 * n / dt
            tr.log_step(loss, ips, st.elapsed_s + time.perf_counter() - t_prev)
            now = time.perf_counter()
            st.elapsed_s += now - t_prev
            t_prev = now
            tr.sync(stop)
            if tr.val_due(*last_val):
                tr.validate()
                last_val = (st.step, st.elapsed_s)
                tr.checkpoint()
            elif cfg.train.ckpt_every and st.step % cfg.train.ckpt_every == 0:
                tr.checkpoint()
            now = time.perf_counter()
            st.elapsed_s += now - t_prev
            t_prev = now
            bar.update(task, completed=st.step if bar.tasks[task].fields["by"] == "step"
                       else st.elapsed_s, step=st.step, loss=loss, ips=ips, dice=st.last_dice)
    finally:
        if pf:
            pf.close()
    if status == "complete" and last_val[0] != st.step:
        tr.validate()
    tr.checkpoint()
    tr.sync(stop)  # surfaces a failed final write on every rank
    return status


def _prepare_data(cfg: RunConfig, data_dir: Path | None, console, is_main: bool):
    from lkmseg.data.prepare import prepare

    t = cfg.train
    if console is not None and is_main:
        console.print("preparing data (decoded once into the cache, then reused)…")
    prep = prepare(data_dir, cfg.size, val_frac=t.val_frac, seed=t.seed,
                   group_pattern=t.group_pattern, skip_bad=t.skip_bad)
    for s in prep.skipped:
        if console is not None and is_main:
            console.print(f"[yellow]warning: skipped {s}[/]")
    # absolute paths: export reads them from wherever it is started
    cfg.data = {"source": str(prep.source.resolve()), "layout": prep.layout,
                "train_groups": sorted({i.group for i in prep.train_items}),
                "val_groups": sorted({i.group for i in prep.val_items}),
                "val_items": [[str(i.image.resolve()), str(i.mask.resolve())]
                              for i in prep.val_items],
                "n_train": len(prep.train_items), "n_val": len(prep.val_items)}
    return prep


def train_run(cfg: RunConfig, data_dir: str | Path | None = None, out: str | Path = "runs",
              name: str | None = None, device: str = "auto", resume: str | Path | None = None,
              console=None) -> tuple[Path, dict]:
    """Train (or resume) one run; returns (run_dir, summary). ``console``: a rich Console.

    Under torchrun (WORLD_SIZE > 1) every process calls this: rank 0 claims the run folder
    (holding its lock until the end) and builds the data cache first, the others follow; only
    rank 0 writes into the run folder.
    """
    resolve_device(device)  # a bad --device fails before any work
    init_distributed(device)  # joins the process group under torchrun
    held: list[RunClaim] = []

    def claim() -> Path:
        c = (claim_run(resume, "train") if resume is not None else
             claim_new_run(out, name, default_run_name(cfg)))
        held.append(c)
        return c.path

    run_dir = decide_on_rank0(claim)
    try:
        result = _train_claimed(cfg, run_dir, data_dir, device, resume is not None, console)
    except BaseException:
        for c in held:  # a failed start leaves no half-made folder
            c.abandon()
        raise
    for c in held:
        c.release()
    return result


def _train_claimed(cfg: RunConfig, run_dir: Path, data_dir: str | Path | None, device: str,
                   resume: bool, console) -> tuple[Path, dict]:
    is_main = init_distributed(device)[0] == 0
    if resume and data_dir is None and cfg.data.get("layout") != "synthetic":
        data_dir = cfg.data.get("source")
    prep = rank0_first(lambda: _prepare_data(cfg, Path(data_dir) if data_dir else None,
                                              console, is_main))
    tr = Trainer(cfg, run_dir, prep, device, resume, console)
    if is_main:  # written once the run can start: a failed start leaves no half-made folder
        write_json(run_dir / "config.json", {**cfg.to_dict(), "runtime": tr.rt.choice.to_dict()})
    if console is not None and tr.rt.is_main:
        console.print(prep.describe())
        console.print(f"run {run_dir}: block {cfg.model.block}, "
                      f"{count_params(tr.model) / 1e6:.2f} M params, {tr.rt.describe()}")
        console.print(describe_choice(tr.rt.choice), highlight=False)
        console.print(f"data loading: {tr.prefetch[1]}", highlight=False)
    by_time = tr.total is None or bool(cfg.train.time_budget_s)
    total = cfg.train.time_budget_s if by_time else tr.total
    bar = _bar(console if tr.rt.is_main else None, total, by_time)
    try:
        with _StopFlag() as stop, bar:
            task = bar.add_task(f"train {cfg.model.block}", total=total, step=tr.state.step,
                                loss=float("nan"), ips=float("nan"), dice=tr.state.last_dice,
                                by="time" if by_time else "step")
            status = run_loop(tr, stop, bar, task)
    finally:
        tr.close()
    full = None
    if tr.rt.is_main and status == "complete" and cfg.train.full_res_eval and prep.val_items:
        model, _ = ckpt.load_run(run_dir, device=tr.rt.device)
        full = evaluate_full_res(model, prep.val_items, cfg.size, cfg.threshold, tr.rt.device)
    summary = _summary(tr, status, tr.source.images_per_s(), full)
    if tr.rt.is_main:
        write_json(run_dir / "summary.json", summary)
        write_results_png(run_dir)
    return run_dir, summary
