"""The Python API end to end on a tiny run: train -> load -> predict (array, list, folder) ->
save_pretrained -> load -> same masks -> export; the Hub with a local folder and a mocked
upload; results as data."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import rgb_noise, write_pairs

import lkmseg
from lkmseg.errors import UserError

TINY = dict(size=(32, 48), width=4, depth=3, batch_size=4, channels_last="off", amp="off",
            val_frac=0.34, tensorboard=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    mp = pytest.MonkeyPatch()
    mp.setenv("LKMSEG_CACHE", str(root / "cache"))
    data = write_pairs(root / "data", "carvana", groups=3, views=4, size=(48, 64))
    run = lkmseg.train("1x5", data=data, steps=12, out=root / "runs", name="r", verbose=False,
                       val_every=6, **TINY)
    yield run, data, root
    mp.undo()


def test_train_returns_a_run(trained):
    run, _, _ = trained
    assert isinstance(run, lkmseg.Run) and run.status == "complete"
    assert run.path.name == "r" and (run.path / "model.safetensors").is_file()
    assert run.config.model.block == "1x5" and run.config.size == (32, 48)
    assert run.summary["steps"] == 12 and 0.0 <= run.best_dice <= 1.0
    assert (run.path / "results.png").stat().st_size > 10_000  # loss and Dice curves
    again = lkmseg.Run.open(run.path)
    assert again.summary == json.loads((run.path / "summary.json").read_text())


def test_predict_array_list_folder_and_stream(trained, tmp_path):
    run, data, _ = trained
    model = lkmseg.load(run, engine="torch")
    assert model.block == "1x5" and "torch" in repr(model)
    img = rgb_noise(50, 70, seed=1)
    (r,) = model.predict(img, logits=True)
    assert r.mask.shape == (50, 70) and r.mask.dtype == np.uint8
    assert set(np.unique(r.mask)) <= {0, 1} and r.source == "array" and r.frame == 0
    assert r.logits.shape == (50, 70) and np.array_equal(r.mask, (r.logits > 0).astype(np.uint8))
    imgs = [rgb_noise(40, 60, seed=2), rgb_noise(33, 21, seed=3), img]
    res = model.predict(imgs, batch_size=2)
    assert [x.size for x in res] == [(40, 60), (33, 21), (50, 70)]
    assert [x.frame for x in res] == [0, 1, 2] and res[1].logits is None
    assert np.array_equal(res[2].mask, r.mask)  # same image, same mask, whatever the batch
    folder = data / "train"
    files = sorted(folder.glob("*.jpg"))
    res = model.predict(folder)
    assert [x.source for x in res] == [str(f) for f in files] and all(x.frame == 0 for x in res)
    assert res[0].size == (48, 64) and res[0].to_dict()["size"] == [48, 64]
    gen = model.predict(str(folder), stream=True, batch_size=3)
    assert not isinstance(gen, list)
    first = next(gen)
    gen.close()  # stops the reader thread early
    assert np.array_equal(first.mask, res[0].mask)
    p = res[0].save(tmp_path / "m.png")
    assert np.array_equal(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) // 255, res[0].mask)


def test_bad_inputs_are_user_errors(trained):
    run, _, root = trained
    model = lkmseg.load(run, engine="torch")
    with pytest.raises(UserError, match="dtype float32"):
        model.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(UserError, match="shape"):
        model.predict(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(UserError, match="not found"):
        model.predict(root / "nowhere.jpg")
    with pytest.raises(UserError, match="unknown training option 'widht'"):
        lkmseg.train("1x5", widht=4)
    with pytest.raises(UserError, match="not found"):
        lkmseg.load(root / "no-such-run")
    with pytest.raises(UserError, match="unknown export option 'onx'"):
        lkmseg.export(run, onx=False)


def test_save_pretrained_load_same_masks_then_export(trained, tmp_path):
    run, data, _ = trained
    model = lkmseg.load(run, engine="torch")
    imgs = [rgb_noise(48, 64, seed=s) for s in range(3)]
    want = [r.mask for r in model.predict(imgs)]
    saved = model.save_pretrained(tmp_path / "car-seg")
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors", "summary.json"]
    cfg = json.loads((saved / "config.json").read_text())
    assert "val_items" not in cfg["data"] and cfg["data"]["val_groups"]
    card = (saved / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: lkmseg")
    params = run.summary["params"]
    assert f"{params:,} parameters" in card and "`1x5`" in card
    assert f"{run.best_dice:.4f}" in card and "held-out group" in card
    assert "12 steps" in card and "machine:" in card
    back = lkmseg.load(saved, engine="torch")
    assert all(np.array_equal(a.mask, b) for a, b in zip(back.predict(imgs), want))
    res = back.export(int8=False, fp16=False, parity_images=2, gate_images=4)
    assert res.passed and res.report["formats"]["onnx_fp32"]["passed"] is True
    assert res.files["onnx_fp32"] == saved / "export" / "model.onnx"
    ort = lkmseg.load(saved, engine="onnxruntime")
    agree = [float((a.mask == b).mean()) for a, b in zip(ort.predict(imgs), want)]
    assert min(agree) > 0.999


class _FakeApi:
    """HfApi stand-in: records the calls and keeps the uploaded folder."""

    calls: list = []
    store: Path

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kw):
        _FakeApi.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, *, repo_id, folder_path, **kw):
        import shutil

        _FakeApi.calls.append(("upload_folder", repo_id, kw))
        shutil.copytree(folder_path, _FakeApi.store / repo_id, dirs_exist_ok=True)
        return types.SimpleNamespace(commit_url=f"https://hub.example/{repo_id}/commit/1")


def test_push_to_hub_then_load_by_repo_id(trained, tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    run, _, _ = trained
    _FakeApi.calls, _FakeApi.store = [], tmp_path / "hub"
    monkeypatch.setattr(hub, "HfApi", _FakeApi)
    model = lkmseg.load(run, engine="torch")
    url = model.push_to_hub("me/car-seg", private=True, token="t0k")
    assert url == "https://hub.example/me/car-seg/commit/1"
    assert [c[0] for c in _FakeApi.calls] == ["create_repo", "upload_folder"]
    assert _FakeApi.calls[0][2]["private"] is True
    uploaded = tmp_path / "hub" / "me" / "car-seg"
    assert 'lkmseg.load("me/car-seg")' in (uploaded / "README.md").read_text()
    asked = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        asked.append((repo_id, revision))
        return str(uploaded)

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    back = lkmseg.load("me/car-seg@v1", engine="torch")
    assert asked == [("me/car-seg", "v1")] and back.name == "car-seg"
    img = rgb_noise(45, 61, seed=9)
    assert np.array_equal(back.predict(img)[0].mask, model.predict(img)[0].mask)


def test_hub_id_without_the_extra_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(UserError, match=r"lkmseg\[hub\]"):
        lkmseg.load("someone/some-model")


def test_bench_returns_rows(trained, tmp_path):
    run, _, _ = trained
    rep = lkmseg.bench([run], engines="torch", batch_sizes=[1], train=False, reps=3,
                       rounds=1, limit=2, out=tmp_path / "b")
    assert rep.rows and {r["engine"] for r in rep.rows} == {"torch"}
    ok = [r for r in rep.rows if r["status"] == "ok"]
    assert ok and all(r["latency_ms_p50"] > 0 for r in ok)
    assert (tmp_path / "b" / "bench.json").is_file() and rep.context["device"] == "cpu"
    assert json.loads((tmp_path / "b" / "bench.json").read_text())[0]["model"] == "r"


def test_hub_download_failure_is_one_clear_line(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")

    def offline(repo_id, revision=None, allow_patterns=None):
        raise hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(UserError, match=r"runs/typo: no such local folder, and no model "
                                        r"downloaded .*LocalEntryNotFoundError"):
        lkmseg.load("runs/typo")
