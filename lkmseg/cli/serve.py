"""`lkmseg serve`: a model behind NVIDIA Triton Inference Server (PyTriton), HTTP + gRPC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lkmseg.errors import EXIT_INTERRUPTED

MAX_SIDE, MAX_PIXELS = 8192, 8192 * 8192  # lkmseg.serve.limits' (not imported: it loads torch)

CLIENT_SNIPPET = '''\
import numpy as np, tritonclient.http as httpclient
client = httpclient.InferenceServerClient("{http_hostport}")
image = ...  # RGB uint8 (H, W, 3), any size
inp = httpclient.InferInput("image", [1, *image.shape], "UINT8")
inp.set_data_from_numpy(image[None])
mask = client.infer("{model}", [inp]).as_numpy("mask")[0]  # uint8 (H, W), 0/1'''


def banner(server) -> str:  # noqa: ANN001 — lkmseg.serve.Server, imported lazily
    """What `lkmseg serve` prints once the model is ready."""
    ep, o, cfg = server.endpoints, server.options, server.config
    name = ep["model"]
    outputs = "mask uint8 (B,H,W) 0/1" + (", logits float32 (B,H,W)" if o.logits else "")
    lines = [
        f"serving {name}: {server.engine}; images resized to {cfg.size[0]}x{cfg.size[1]}, "
        f"threshold {server.threshold:g}",
        *([f"  {server.engines[0].auto_choice}"] if server.engines[0].auto_choice else []),
        f"  dynamic batching: up to {o.max_batch} images, {o.queue_delay_ms:g} ms queue delay, "
        f"{o.instances} instance(s); queue: at most {o.max_queue} requests, "
        f"{o.queue_timeout_s:g} s each",
        f"  input:   image uint8 (B,H,W,3) RGB, largest side {o.max_side}, "
        f"{o.max_pixels:,} pixels per request",
        f"  outputs: {outputs}",
        f"  HTTP     {ep['http']}/v2/models/{name}/infer   (KServe v2)",
        f"  gRPC     {ep['grpc']}",
        f"  health   {ep['http']}/v2/health/ready   {ep['http']}/v2/models/{name}/ready",
        f"  metrics  {ep['metrics']}   stats {ep['http']}/v2/models/{name}/stats",
        "client (pip install 'tritonclient[http]'):",
        CLIENT_SNIPPET.format(http_hostport=ep["http"].split("://", 1)[1], model=name),
        "Ctrl-C or SIGTERM stops the server after the requests in flight.",
    ]
    return "\n".join(lines)


def serve_cmd(
    model: Annotated[Path, typer.Argument(help="Run folder, export folder, .onnx, .engine "
                                               "or .safetensors.")],
    engine: Annotated[str, typer.Option(help="auto | torch | onnxruntime | tensorrt.")] = "auto",
    precision: Annotated[str | None, typer.Option(help="fp32 | fp16 | bf16 (torch only) "
                                                       "(default: the engine's).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    address: Annotated[str, typer.Option(help="IPv4 address to listen on: 127.0.0.1 = this "
                                              "machine only; 0.0.0.0 = every interface, with "
                                              "no authentication: see docs/serving.md.")
                       ] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP (KServe v2) port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC (KServe v2) port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 8002,
    max_batch: Annotated[int, typer.Option(help="Largest batch Triton's dynamic batcher "
                                                "forms (images).")] = 8,
    queue_delay_ms: Annotated[float, typer.Option(help="How long a request may wait for "
                                                       "others to batch with.")] = 2.0,
    instances: Annotated[int | None, typer.Option(
        help="Model instances, each its own engine, run in parallel (default: one per "
             "physical core on CPU, each with that core's threads; 1 on a GPU).")] = None,
    logits: Annotated[bool, typer.Option("--logits", help="Also offer a 'logits' output "
                                                          "(float32, image size).")] = False,
    threshold: Annotated[float | None, typer.Option(help="Mask threshold on the sigmoid "
                                                         "(default: the model's).")] = None,
    max_side: Annotated[int, typer.Option(help="Largest image side accepted; bigger images "
                                               "get an error.")] = MAX_SIDE,
    max_pixels: Annotated[int, typer.Option(help="Most pixels per request (all its images); "
                                                 "larger requests get an error.")] = MAX_PIXELS,
    max_queue: Annotated[int, typer.Option(help="Most requests waiting for an instance; more "
                                                "get an error at once.")] = 8,
    queue_timeout: Annotated[float, typer.Option(help="Seconds a request may wait for an "
                                                      "instance before it gets an error.")
                             ] = 60.0,
    name: Annotated[str, typer.Option(help="Model name in Triton.")] = "lkmseg",
    exit_timeout: Annotated[int, typer.Option(help="Seconds a stop waits for requests in "
                                                   "flight.")] = 30,
) -> None:
    """Serve MODEL on NVIDIA Triton Inference Server (HTTP + gRPC, dynamic batching, metrics).

    Clients send RGB uint8 images of any size and get back masks at the image's own size,
    made with the same pre- and post-processing as `lkmseg predict`. Listens on this machine
    only unless --address says otherwise (docs/serving.md). Needs the optional `serve` extra
    (README, "Serving"). Exit codes: 0 stopped (Ctrl-C, SIGTERM), 2 bad input or the model
    did not load, 5 Triton exited on its own, 130 Ctrl-C before serving began.
    """
    from lkmseg.serve import ServeOptions, serve
    from lkmseg.serve.address import exposure_warning

    opts = ServeOptions(engine=engine, precision=precision, device=device, address=address,
                        http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                        max_batch=max_batch, queue_delay_ms=queue_delay_ms, instances=instances,
                        logits=logits, threshold=threshold, max_side=max_side,
                        max_pixels=max_pixels, max_queue=max_queue, queue_timeout_s=queue_timeout,
                        model_name=name, exit_timeout_s=exit_timeout)
    warning = exposure_warning(address)
    if warning:
        typer.echo(f"warning: {warning}", err=True)

    def ready(server) -> None:  # noqa: ANN001
        typer.echo(banner(server))

    try:
        serve(model, opts, on_ready=ready)
    except KeyboardInterrupt:  # Ctrl-C while loading; once serving, it stops the server
        typer.echo("interrupted before serving began: nothing was served", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo("stopped")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
