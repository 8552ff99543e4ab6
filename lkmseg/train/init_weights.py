"""``--init``: start a training run from other weights (a run folder's best, or a file)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lkmseg.errors import UserError
from lkmseg.files import run_folder as ckpt


def init_from(model: nn.Module, source: str | Path) -> Path:
    """Load ``source`` (a run folder -> its model.safetensors, or a .safetensors file) into
    ``model``; UserError when the names or shapes differ from the model's."""
    p = Path(source)
    if p.is_dir():
        p = p / ckpt.BEST
    sd = ckpt.read_weights(p)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    if want != have:
        diff = sorted(want.keys() ^ have.keys()) or \
            sorted(k for k in want if want[k] != have[k])
        raise UserError(f"--init {p}: weights are for another model ({len(diff)} tensors "
                        f"differ, first {diff[0]}); --init needs a run of the same --arch, "
                        "--block, --where, --width and --depth")
    model.load_state_dict(sd, strict=True)
    return p
