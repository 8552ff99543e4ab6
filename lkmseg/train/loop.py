"""The training loop: ``train_run()`` makes or resumes a run folder and trains it.

Reads top to bottom: claim the run folder, prepare the data (decoded once into the cache),
build the run (``Trainer``: model, optimizer, batches, logs), then loop — agree across ranks,
one step, log, validate and checkpoint when due — until done or stopped; finally the
full-resolution score, ``summary.json`` and ``results.png``.

Stop criteria: --steps, --epochs or --time-budget (wall clock of the run, resumes included),
whichever is given. Batches are a pure function of (seed, step), so --resume continues
exactly where the last checkpoint stopped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from lkmseg import __version__, hw
from lkmseg.config import RunConfig
from lkmseg.data.loader import Prefetcher
from lkmseg.data.prepare import prepare_run
from lkmseg.files import run_folder as ckpt
from lkmseg.files.layout import CONFIG, SUMMARY
from lkmseg.files.run_claim import RunClaim, claim_new_run, claim_run, default_run_name
from lkmseg.fsutil import write_json
from lkmseg.models import count_params
from lkmseg.train.distributed import decide_on_rank0, rank0_first
from lkmseg.train.evaluate import evaluate_full_res
from lkmseg.train.runtime import describe_choice, init_distributed, resolve_device
from lkmseg.train.terminal import StopFlag, progress_bar
from lkmseg.train.tracking import write_results_png
from lkmseg.train.trainer import Trainer


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
    prep = rank0_first(lambda: prepare_run(cfg, Path(data_dir) if data_dir else None,
                                           console if is_main else None))
    tr = Trainer(cfg, run_dir, prep, device, resume, console)
    if is_main:  # written once the run can start: a failed start leaves no half-made folder
        write_json(run_dir / CONFIG, {**cfg.to_dict(), "runtime": tr.rt.choice.to_dict()})
    if console is not None and tr.rt.is_main:
        console.print(prep.describe())
        console.print(f"run {run_dir}: block {cfg.model.block}, "
                      f"{count_params(tr.model) / 1e6:.2f} M params, {tr.rt.describe()}")
        console.print(describe_choice(tr.rt.choice), highlight=False)
        console.print(f"data loading: {tr.prefetch[1]}", highlight=False)
    by_time = tr.total is None or bool(cfg.train.time_budget_s)
    total = cfg.train.time_budget_s if by_time else tr.total
    bar = progress_bar(console if tr.rt.is_main else None, by_time)
    try:
        with StopFlag() as stop, bar:
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
        write_json(run_dir / SUMMARY, summary)
        write_results_png(run_dir)
    return run_dir, summary


def run_loop(tr: Trainer, stop: StopFlag, bar, task) -> str:
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
