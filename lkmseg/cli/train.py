"""`lkmseg train`: train one model (or resume a run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from lkmseg.cli.defaults import config_callback
from lkmseg.errors import LkmsegError


def train_cmd(
    block: Annotated[Optional[str], typer.Option(
        help="Block: 3x3, 5x5, 1x5, KxK, 1xK, gcnK. Default: 3x3 for --arch unet; for other "
             "archs what their square convs become (default KxK: as built).")] = None,
    arch: Annotated[str, typer.Option(
        help="unet (the seed's U-Net) or smp:<Arch>:<encoder>, e.g. smp:Unet:resnet34 "
             "(needs the smp extra).")] = "unet",
    where: Annotated[str, typer.Option(
        help="Square convs --block replaces: all, encoder, decoder or a regular expression "
             "on layer names (unet: the rest keeps a square kernel of the same size).")] = "all",
    encoder_weights: Annotated[Optional[str], typer.Option(
        help="smp: pretrained encoder weights to start from, e.g. imagenet.")] = None,
    init: Annotated[Optional[Path], typer.Option(
        help="Start from these weights: a run folder (its model.safetensors) or a "
             ".safetensors file of the same model.")] = None,
    kernel: Annotated[Optional[int], typer.Option(help="Fill K in KxK/1xK/gcnK.")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Dataset folder (Carvana train/+train_masks/, or images/+masks/). "
             "Default: the embedded synthetic set.")] = None,
    size: Annotated[str, typer.Option(help="Training size: N or HxW.")] = "256",
    epochs: Annotated[Optional[int], typer.Option(min=1)] = None,
    steps: Annotated[Optional[int], typer.Option(min=1)] = None,
    time_budget: Annotated[Optional[str], typer.Option(
        help="Wall-clock budget, e.g. 90s, 10m, 1h.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak AdamW learning rate.")] = 3e-3,
    width: Annotated[int, typer.Option(min=1, help="Base width.")] = 8,
    depth: Annotated[int, typer.Option(min=1, max=8, help="Number of 2x2 poolings.")] = 6,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[str, typer.Option(help="auto, off, bf16 or fp16.")] = "auto",
    channels_last: Annotated[str, typer.Option(help="auto (measured), on or off.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    workers: Annotated[int | None, typer.Option(
        min=0, help="Batches a background thread prepares ahead; 0 = in the training thread. "
                    "Default: ahead on a GPU or where a CPU core is spare; in the training "
                    "thread when torch uses every core (a loader thread would contend with "
                    "the training threads).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    val_every: Annotated[Optional[int],
                         typer.Option(min=1, help="Steps between validations.")] = None,
    ckpt_every: Annotated[Optional[int],
                          typer.Option(min=1, help="Steps between checkpoints.")] = None,
    val_frac: Annotated[float, typer.Option(min=0.01, max=0.9)] = 0.25,
    group_pattern: Annotated[Optional[str], typer.Option(
        help="Regex on file stems whose first group names the object (split key).")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable pairs.")] = False,
    augment: Annotated[bool, typer.Option(help="Flip, shift-scale, HSV jitter.")] = True,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="SyncBatchNorm under DDP.")] = False,
    nproc: Annotated[int, typer.Option(min=1, help="Launch N processes with torchrun.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for run folders.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option(help="Run folder name.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run folder.")] = None,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard/--no-tensorboard",
        help="TensorBoard event files in the run folder (when tensorboard is installed: "
             "pip install 'lkmseg[tensorboard]').")] = True,
    config: Annotated[Optional[Path], typer.Option(
        "--config", is_eager=True, callback=config_callback,
        help="Defaults for these options from a run's config.json or a TOML file; options "
             "given here override it.")] = None,
) -> None:
    """Train a U-Net (the seed's, or an smp architecture with --arch) with the chosen block;
    writes a run folder (config.json, weights, train/val logs, summary.json; see the README's
    "Run folder").

    With --nproc N (or under torchrun) N processes train one model with
    DistributedDataParallel; --batch-size is per process.
    """
    from lkmseg.cli.options import check_finite, check_regex, parse_duration

    check_finite(lr, "--lr")
    if group_pattern is not None:
        check_regex(group_pattern, "--group-pattern")
    budget = parse_duration(time_budget) if time_budget else None
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from lkmseg.train.distributed import launch

        raise typer.Exit(launch(nproc, _without_nproc(sys.argv[1:])))
    from rich.console import Console

    from lkmseg.api.run import train

    rank = int(os.environ.get("RANK", "0"))
    try:
        console = Console(soft_wrap=True)
        options = {} if resume is not None else dict(
            kernel=kernel, width=width, depth=depth, epochs=epochs, batch_size=batch_size,
            lr=lr, val_every=val_every, amp=amp, channels_last=channels_last, compile=compile,
            workers=workers, seed=seed, val_frac=val_frac, augment=augment,
            ckpt_every=ckpt_every, sync_bn=sync_bn, skip_bad=skip_bad,
            group_pattern=group_pattern, tensorboard=tensorboard, arch=arch, where=where,
            encoder_weights=_none(encoder_weights), init=str(init) if init else None)
        if resume is not None and epochs:
            options["epochs"] = epochs
        run = train(block, data, size, budget, steps, out, name, device, resume=resume,
                    console=console, **options)
        run_dir, summary = run.path, run.summary
    except LkmsegError as e:
        if rank != 0:  # rank 0 reports it (errors are agreed on by all ranks, or rank 0's)
            raise typer.Exit(e.exit_code) from None
        raise
    finally:
        _leave_process_group()
    if rank == 0:
        _report(console, run_dir, summary)


def _none(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def _report(console, run_dir: Path, summary: dict) -> None:
    if summary["status"] == "interrupted":
        more = f" --nproc {summary['world_size']}" if summary["world_size"] > 1 else ""
        console.print(f"interrupted at step {summary['steps']}; checkpoint saved. "
                      f"Resume with: lkmseg train --resume {run_dir}{more}", highlight=False)
        return
    full = summary["val_dice_full_res"]
    console.print(f"done: {run_dir} | best val dice {summary['best_val_dice']:.4f}"
                  + (f" (full-res {full:.4f})" if full is not None else "")
                  + f" | {summary['images_per_s']:.1f} img/s train, "
                  f"{summary['loader_images_per_s']:.0f} img/s loader | "
                  f"{summary['train_seconds']:.0f} s", highlight=False)


def _without_nproc(args: list[str]) -> list[str]:
    cleaned, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            cleaned.append(a)
    return cleaned


def _leave_process_group() -> None:
    """Free the process group. Collect garbage first: a DDP model kept alive by a reference
    cycle (e.g. TensorBoard's writer holding a trainer's method) holds the group, whose gloo
    threads would then outlive destroy_process_group and can abort the process at exit."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
