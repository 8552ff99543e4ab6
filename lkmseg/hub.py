"""Saved models: a folder of ``config.json`` + ``model.safetensors`` + a model card, and the
Hugging Face Hub (``huggingface_hub``: the ``hub`` extra, imported only when used).

A saved folder is a run folder reduced to what rebuilds the model (``lkmseg.load`` reads it
like one): ``config.json``, ``model.safetensors``, ``summary.json`` when the run has one,
``README.md`` (the model card: block, parameters, Dice and on which images, training budget
and machine) and, with ``export=True``, the ONNX files of ``RUN/export``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.files.layout import BEST, CONFIG, EXPORT_DIR, ONNX_FILES, REPORT, SUMMARY
from lkmseg.fsutil import atomic_path, write_json, write_text

WEIGHTS = BEST
CARD = "README.md"
REPO_ID = re.compile(r"^(?:hf://)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")
HUB_FILES = [CONFIG, WEIGHTS, SUMMARY, CARD, f"{EXPORT_DIR}/*"]
HUB_EXTRA = "pip install 'lkmseg[hub]' (huggingface_hub)"


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def portable_config(cfg: RunConfig) -> dict:
    """config.json without this machine's file lists (the validation image paths)."""
    d = cfg.to_dict()
    d["data"] = {k: v for k, v in d.get("data", {}).items() if k != "val_items"}
    return d


def save_folder(out: str | Path, cfg: RunConfig, weights: Path, summary: dict | None,
                export_dir: Path | None = None, repo_id: str | None = None) -> Path:
    """Write a saved-model folder (see the module docstring); returns it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; save_pretrained needs a folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, portable_config(cfg))
    if weights.resolve() != (out / WEIGHTS).resolve():
        _copy(weights, out / WEIGHTS)
    if summary:
        write_json(out / SUMMARY, summary)
    if export_dir is not None:
        for name in [*ONNX_FILES.values(), REPORT]:
            if (export_dir / name).is_file():
                _copy(export_dir / name, out / EXPORT_DIR / name)
    write_text(out / CARD, model_card(cfg, summary, repo_id or out.name))
    return out


def _fmt(v: Any, spec: str = ".4f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "—"


def _dice_lines(cfg: RunConfig, s: dict) -> list[str]:
    data = cfg.data or {}
    groups = data.get("val_groups") or []
    where = (f"{data.get('n_val', '?')} validation images of `{data.get('source', '?')}` "
             f"({data.get('layout', '?')} layout): {len(groups)} held-out group(s), never "
             "trained on (the split is by group, e.g. by car)")
    return [f"- validation Dice (at the training size): **{_fmt(s.get('best_val_dice'))}** "
            f"(step {s.get('best_step', '?')})",
            f"- validation Dice at each image's full resolution: "
            f"{_fmt(s.get('val_dice_full_res'))}",
            f"- measured on {where}"]


def _budget_lines(cfg: RunConfig, s: dict) -> list[str]:
    t = cfg.train
    rule = (f"time budget {t.time_budget_s:g} s" if t.time_budget_s else
            f"{t.steps} steps" if t.steps else f"{t.epochs} epochs" if t.epochs else "default")
    m = s.get("machine") if isinstance(s.get("machine"), dict) else {}
    machine = ", ".join(str(x) for x in (m.get("gpu"), m.get("cpu"),
                                         m.get("threads") and f"{m['threads']} threads") if x)
    return [f"- stopping rule: {rule}; trained {s.get('steps', '?')} steps "
            f"({_fmt(s.get('epochs'), '.1f')} epochs, {s.get('images_seen', '?')} images) in "
            f"{_fmt(s.get('train_seconds'), '.0f')} s, batch {t.batch_size}, AdamW lr {t.lr:g}",
            f"- precision {s.get('precision', '?')}, "
            f"{_fmt(s.get('images_per_s'), '.1f')} training images/s",
            f"- machine: {s.get('device', '?')}" + (f"; {machine}" if machine else "")]


def model_card(cfg: RunConfig, summary: dict | None, repo_id: str) -> str:
    """The README.md of a saved model (Hugging Face model card with YAML metadata)."""
    s = summary or {}
    spec = cfg.model.spec
    params = s.get("params")
    lines = ["---", "library_name: lkmseg", "license: mit", "pipeline_tag: image-segmentation",
             "tags:", "- image-segmentation", "- unet", f"- {spec.family}", "---", "",
             f"# {repo_id}: U-Net with `{spec.name}` blocks", "",
             f"Binary segmentation U-Net trained with [lkmseg](https://pypi.org/project/lkmseg/)"
             f": block `{spec.name}` ({spec.family}, kernel {spec.kernel}), base width "
             f"{cfg.model.width}, {cfg.model.depth} poolings, "
             + (f"{params:,} parameters" if isinstance(params, int) else "parameters: ?")
             + f"; input RGB resized to {cfg.size[0]}x{cfg.size[1]}, mask threshold "
             f"{cfg.threshold:g}.", "", "## Accuracy", ""]
    lines += _dice_lines(cfg, s) if s else ["- not recorded (no summary.json)"]
    lines += ["", "## Training", ""]
    lines += _budget_lines(cfg, s) if s else ["- not recorded (no summary.json)"]
    lines += ["", "## Use", "", "```python", "import lkmseg", "",
              f'model = lkmseg.load("{repo_id}")',
              'result = model.predict("car.jpg")[0]   # .mask: uint8 (H, W), 0/1', "```", ""]
    return "\n".join(lines)


def parse_repo_id(text: str) -> tuple[str, str | None] | None:
    """(repo id, revision) when ``text`` names a Hub repository and is no local path."""
    if Path(text).exists():
        return None
    m = REPO_ID.match(text.strip())
    return (m.group(1), m.group(2)) if m else None


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as e:
        raise UserError(f"the Hugging Face Hub needs huggingface_hub: {HUB_EXTRA}") from e
    return huggingface_hub


def _hub_errors(hub: Any) -> tuple[type[BaseException], ...]:
    e = hub.errors
    return (e.RepositoryNotFoundError, e.RevisionNotFoundError, e.LocalEntryNotFoundError,
            e.HfHubHTTPError, e.HFValidationError)


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of a Hub model repository (cached by huggingface_hub)."""
    hub = _hub()
    try:
        path = hub.snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES)
    except _hub_errors(hub) as e:
        raise UserError(f"{repo_id}: no such local folder, and no model downloaded from the "
                        f"Hugging Face Hub ({type(e).__name__}); check the path, or the "
                        "repository id, the network and `hf auth login` (private "
                        "repositories)") from e
    folder = Path(path)
    if not (folder / CONFIG).is_file():
        raise UserError(f"{repo_id}: no {CONFIG} in this Hub repository; it was not saved by "
                        "lkmseg (Model.push_to_hub / save_pretrained)")
    return folder


def push(folder_writer: Any, repo_id: str, *, token: str | None = None,
         private: bool | None = None, revision: str | None = None,
         commit_message: str | None = None) -> str:
    """Save into a temporary folder with ``folder_writer(path)``, then create the repository
    (if needed) and upload the folder; returns the commit URL."""
    hub = _hub()
    api = hub.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="lkmseg-hub-") as d:
        folder_writer(Path(d))
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(repo_id=repo_id, folder_path=d, revision=revision,
                                     commit_message=commit_message or "Upload lkmseg model",
                                     repo_type="model")
        except _hub_errors(hub) as e:
            raise UserError(f"{repo_id}: upload to the Hugging Face Hub failed "
                            f"({type(e).__name__}: {e}); check the id and `hf auth login`") from e
    return str(getattr(info, "commit_url", info))


def read_summary(folder: Path | None) -> dict | None:
    if folder is None or not (folder / SUMMARY).is_file():
        return None
    try:
        d = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None
