"""The files lkmseg reads and writes, as a layer of its own.

Training, export, the engines and predict all read or write these files; this package is the
one place that knows their layout and formats, so that inference code (``lkmseg.engines``)
never imports training or export code:

- ``layout``      names of the files in a run folder and its ``export/`` folder
- ``run_folder``  config.json, weights (safetensors), resumable training state
- ``onnx_meta``   the lkmseg metadata stored in every exported ONNX file
- ``sidecar``     the JSON beside a TensorRT engine (TensorRT version, GPU, run config)

It depends only on ``lkmseg.config``, ``lkmseg.models``, ``lkmseg.fsutil`` and third-party
file libraries (safetensors, onnx, torch.load with ``weights_only=True``).
"""
