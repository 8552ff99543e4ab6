"""The model file Triton's Python backend runs for ``lkmseg serve``: PyTriton 0.7's proxy model
(copied beside it as ``pytriton_model.py``, with ``lkmseg_limits.py`` = ``limits.py``), changed
in three ways:

- a request with an empty or oversized image is answered INVALID_ARG with one line before
  PyTriton copies its images on; the other requests of the batch are served, passed on in
  groups of at most ``max_pixels`` (one large request at a time goes through PyTriton's
  shared memory, small ones together as Triton batched them);
- a request the inference callable failed on is answered with one line instead of two
  tracebacks: INVALID_ARG with the ``BadRequest`` message, or INTERNAL with a short line for
  anything else (a bug: its traceback stays in the server's log);
- an instance other than the first waits until the first one's handshake server answers:
  PyTriton's own handshake connects once, within a second, and fails with
  ConnectionRefusedError when it connects between that socket's bind and listen.

Runs inside the Python-backend stub, beside PyTriton's files: imports nothing of lkmseg.
"""

from __future__ import annotations

import json
import pathlib
import time

from . import lkmseg_limits, pytriton_model
from .communication import get_config_from_handshake_server
from .pytriton_model import pb_utils

BAD_REQUEST = lkmseg_limits.BAD_REQUEST
INTERNAL = ("the server failed on this request (a bug, not a problem of the request); the "
            "server's log has the traceback")


def reason(error_text: str) -> tuple[bool, str]:
    """(is a bad request, the line the client gets) from the text of a failed execution."""
    i = error_text.rfind(BAD_REQUEST)
    if i < 0:
        return False, INTERNAL
    return True, error_text[i + len(BAD_REQUEST):].splitlines()[0].strip()


def wait_for_handshake(socket_path: pathlib.Path, timeout_s: float) -> None:
    """Return once the first instance's handshake server answers (or after ``timeout_s``:
    PyTriton's own attempt then reports what is wrong)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get_config_from_handshake_server(socket_path, timeout_s=1.0)
            return
        except (OSError, ValueError):  # not there yet, not listening yet, or half an answer
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


def _error(message: str, bad_request: bool) -> object:
    code = pb_utils.TritonError.INVALID_ARG if bad_request else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel(pytriton_model.TritonPythonModel):
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = config["parameters"]
        self._lkmseg = json.loads(params["lkmseg"]["string_value"])
        self._input = config["input"][0]["name"]
        instance = args["model_instance_name"]
        if instance != "_".join(instance.split("_")[:-1] + ["0"]):  # PyTriton's first instance
            workspace = pathlib.Path(params["workspace-path"]["string_value"])
            wait_for_handshake(workspace / f"{args['model_name']}-config.sock",
                               self._lkmseg["handshake_wait_s"])
        super().initialize(args)

    def _check(self, request: object) -> tuple[str | None, int]:
        """(why the request is refused or None, its pixels)."""
        image = pb_utils.get_input_tensor_by_name(request, self._input)
        if image is None:
            return f"input '{self._input}' is missing", 0
        shape = image.as_numpy().shape
        problem = lkmseg_limits.shape_problem(shape, self._lkmseg["max_side"],
                                              self._lkmseg["max_pixels"], self._input)
        return problem, (shape[0] * shape[1] * shape[2] if problem is None else 0)

    def _serve(self, requests: list) -> list:
        try:
            return super().execute(requests)
        except pb_utils.TritonModelException as e:
            bad_request, line = reason(str(e))
            return [_error(line, bad_request) for _ in requests]

    def execute(self, requests: list) -> list:
        checks = [self._check(r) for r in requests]
        served, group, pixels = [], [], 0
        for request, (problem, n) in zip(requests, checks):
            if problem is not None:
                continue
            if group and pixels + n > self._lkmseg["max_pixels"]:
                served += self._serve(group)
                group, pixels = [], 0
            group.append(request)
            pixels += n
        if group:
            served += self._serve(group)
        answers = iter(served)
        return [next(answers) if problem is None else _error(problem, True)
                for problem, _ in checks]
