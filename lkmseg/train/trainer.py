"""One run's model, optimizer, batches, logs and state, and what the loop does with them:
a training step, validation, checkpoints, and the agreement between ranks that keeps every
process taking the same decisions (``Trainer.sync``).

The learning rate follows ``lr_at`` (linear warm-up, then cosine decay) over the run's
progress: steps done of ``total_steps``, or time spent of --time-budget.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from lkmseg.config import RunConfig
from lkmseg.data.loader import BatchSource, Prefetcher, prefetch_depth
from lkmseg.data.prepare import Prepared
from lkmseg.data.transforms import logit_threshold
from lkmseg.errors import PeerFailed, UserError
from lkmseg.files import run_folder as ckpt
from lkmseg.files.layout import BEST, LAST, TRAIN_LOG, VAL_LOG
from lkmseg.fsutil import explain_os_error, remove_stale_temps
from lkmseg.models import build_model
from lkmseg.train import step as train_step
from lkmseg.train.distributed import all_max, broadcast_buffers, convert_sync_bn
from lkmseg.train.evaluate import evaluate, predict_logits
from lkmseg.train.init_weights import init_from
from lkmseg.train.logs import TRAIN_FIELDS, VAL_FIELDS, CsvLog
from lkmseg.train.runtime import build_runtime
from lkmseg.train.terminal import StopFlag
from lkmseg.train.tracking import TensorBoard

MAX_BAD_STEPS = 20


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


class Trainer:
    """One run: model, optimizer, data source, logs and state, rank-aware."""

    def __init__(self, cfg: RunConfig, run_dir: Path, data: Prepared, device: str,
                 resume: bool, console) -> None:
        self.cfg, self.run_dir, self.data, self.console = cfg, run_dir, data, console
        self.error: UserError | None = None  # a rank-0 write that failed (see _io)
        torch.manual_seed(cfg.train.seed)
        fresh = not resume and not cfg.train.init  # pretrained encoder weights only then
        model = build_model(cfg.model, pretrained=fresh)
        if cfg.train.init and not resume:
            init_from(model, cfg.train.init)
        self.rt = rt = build_runtime(cfg, device, model,
                                     console.print if console is not None else None,
                                     ckpt.recorded_choice(run_dir) if resume else None)
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
            self.tlog = CsvLog(run_dir / TRAIN_LOG, TRAIN_FIELDS, keep)
            self.vlog = CsvLog(run_dir / VAL_LOG, VAL_FIELDS, keep)
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
        if not ckpt.has_checkpoint(d):
            # stopped (e.g. killed) before its first checkpoint: nothing to lose by restarting
            self.warn(f"{d}: no checkpoint yet; training this run from step 0")
            return
        st = ckpt.resume_state(d, self.model, self.opt)
        s = st["progress"]
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

    def sync(self, stop: StopFlag) -> bool:
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
        finite = bool(torch.isfinite(loss.detach()).item())
        if all_max([float(not finite)], rt.device)[0] > 0:  # any rank's: all skip the step
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
            ckpt.save_weights(self.run_dir / BEST, self.model,
                              {"step": st.step, "dice": dice, "block": self.cfg.model.block})
        if self.tb is not None:
            self.tb.validation(st.step, dice, self.data.val_images, self.data.val_masks,
                               partial(predict_logits, self.model, self.rt),
                               logit_threshold(self.cfg.threshold))

    def checkpoint(self) -> None:
        """Write last weights and the full training state (rank 0, atomically)."""
        if self.rt.is_main:
            self._io(self._write_checkpoint)

    def _write_checkpoint(self) -> None:
        st = self.state
        ckpt.save_weights(self.run_dir / LAST, self.model, {"step": st.step})
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
            # it holds self.warn: that cycle would keep the Trainer, and with it DDP's process
            # group and its gloo threads, alive past destroy_process_group until gc runs
            self.tb = None

