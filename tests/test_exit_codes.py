"""Exit codes tell a bug from bad input: 1 + traceback for a bug, 2 + one line for bad input,
3 for a missed quality gate (tests/test_export_gates.py), 4 for a peer's failure under DDP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lkmseg.errors import EXIT_BAD_INPUT, EXIT_GATE, EXIT_PEER, GateFailed, PeerFailed, UserError
from lkmseg.files.layout import SAMPLES_DIR

INJECT = """
import sys
import lkmseg.models.unet as unet

def broken_init(self, cfg):
    raise TypeError("injected bug in model construction")

unet.UNet.__init__ = broken_init
from lkmseg.cli.app import main
sys.argv = ["lkmseg", *sys.argv[1:]]
main()
"""


def _lkmseg_with_bug(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", INJECT, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command", ["export", "predict"])
def test_injected_bug_is_a_traceback_and_exit_1(tiny_run, tmp_path, command):
    run = tiny_run(block="1x5", width=2, depth=2, size=(32, 48))
    samples = SAMPLES_DIR / "images"
    args = [command, str(run)] + ([str(samples), "-o", str(tmp_path / "out")]
                                  if command == "predict" else [])
    p = _lkmseg_with_bug(*args)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "Traceback (most recent call last)" in p.stderr
    assert "TypeError: injected bug in model construction" in p.stderr
    assert "error: " not in p.stderr.splitlines()[-1]  # not dressed up as bad input


def test_bad_input_is_one_line_exit_2(tmp_path):
    p = _lkmseg_with_bug("export", str(tmp_path / "missing_run"))
    assert p.returncode == EXIT_BAD_INPUT
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing_run" in lines[0]


def test_codes_are_distinct():
    codes = [UserError.exit_code, GateFailed.exit_code, PeerFailed.exit_code, 1]
    assert codes == [EXIT_BAD_INPUT, EXIT_GATE, EXIT_PEER, 1] and len(set(codes)) == 4
