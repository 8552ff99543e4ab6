"""`lkmseg info`: versions, devices, and which engines can run here (and how to fix those
that cannot)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def info_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show versions, devices, and which engines can run here (and how to fix the others).

    Versions: lkmseg, Python, torch, CUDA, cuDNN, onnx, onnxruntime and its providers,
    TensorRT. Engines: each engine x precision x device, available or why not.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from lkmseg.engines.info import engine_matrix, environment

    env, rows = environment(), engine_matrix()
    if as_json:
        typer.echo(json.dumps({"environment": env, "engines": rows}, indent=2))
        return
    console = Console()
    t = Table(title="lkmseg environment", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    for key in ("lkmseg", "python", "platform", "torch", "cuda", "cudnn", "onnx", "onnxslim",
                "onnxruntime", "openvino", "tensorrt", "cv2", "numpy"):
        t.add_row(key, str(env.get(key) or "not installed" if key not in ("cuda", "cudnn")
                           else env.get(key) or "—"))
    t.add_row("onnxruntime providers", ", ".join(env.get("onnxruntime_providers", [])) or "—")
    t.add_row("cpu", f"{env['cpu']['name']}, {env['cpu']['physical_cores']} physical cores, "
                     f"torch kernels: {env.get('torch_cpu_capability', '?')}, "
                     f"flags: {env['cpu'].get('flags', '?')}")
    gpus = env.get("gpus") or []
    t.add_row("gpus", "; ".join(f"{g['index']}: {g['name']} (sm {g['capability']}, "
                                f"{g['memory_gib']} GiB)" for g in gpus) or "none visible")
    console.print(t)
    e = Table(title="engines")
    for col in ("engine", "precision", "device", "available", "detail / how to fix"):
        e.add_column(col)
    for r in rows:
        e.add_row(r["engine"], r["precision"], r["device"],
                  "[green]yes[/]" if r["available"] else "[red]no[/]", escape(r["detail"]))
    console.print(e)


def register(app: typer.Typer) -> None:
    app.command("info")(info_cmd)
