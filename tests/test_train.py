"""train.py as a user runs it, on the shipped sample: checkpoints, TensorBoard, resume, artifacts, DDP."""

from __future__ import annotations

import json
import subprocess
import sys

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from datamodules import DailySequenceDataModule, HourlyWindowDataModule
from models import ExtractorModule, LSTMExtractor, TCNExtractor
from store.extractors import list_extractors
from tests.conftest import ROOT, compose

FOLD = 5


def _train(run_dir, artifacts, *overrides, timeout=300):
    done = subprocess.run(
        [sys.executable, "train.py", f"fold={FOLD}", f"hydra.run.dir={run_dir}", f"paths.artifacts_dir={artifacts}",
         *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("lstm")
    _train(base / "run", base / "artifacts", "model=lstm", "trainer.max_epochs=2")
    return base


def test_lstm_run_writes_checkpoints_tensorboard_and_an_artifact(lstm_run):
    run = lstm_run / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list(run.glob("checkpoints/epoch*.ckpt"))) == 1
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    [artifact] = list_extractors(lstm_run / "artifacts" / "extractors")
    meta = artifact.meta
    assert meta["kind"] == "lstm" and meta["fold"] == FOLD
    assert (meta["train_start"], meta["train_end"], meta["val_start"], meta["val_end"]) == (
        "2023-02-09", "2023-07-10", "2023-07-25", "2023-08-14")
    assert meta["label"] == "label_3d" and meta["label_horizon_days"] == 3 and meta["purge_days"] == 14
    assert meta["inputs"]["columns"][:3] == ["close_ret", "residual_1d", "market_ret_1d"]
    assert len(meta["inputs"]["columns"]) == 12 and meta["inputs"]["window"] == 30
    assert meta["normalization"]["columns"] == meta["inputs"]["columns"]
    assert len(meta["data_fingerprint"]) == 64 and len(meta["feature_schema_hash"]) == 16
    assert meta["code_revision"] != "" and meta["metrics"]["epochs"] == 2
    assert {"val/loss", "val/f1_macro", "val/auroc_buy", "test/loss", "test/acc"} <= set(meta["metrics"])
    # The saved weights load into a fresh network.
    net = LSTMExtractor(**{k: v for k, v in meta["net"].items() if k != "_target_"})
    net.load_state_dict(artifact.load_state_dict())


def test_resume_continues_from_the_last_checkpoint(lstm_run):
    run = lstm_run / "run"
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    _train(run, lstm_run / "artifacts", "model=lstm", "trainer.max_epochs=3", "resume=true")
    after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    # One more epoch from where it stopped, not three from scratch.
    assert before["loops"]["fit_loop"]["epoch_progress"]["total"]["started"] == 2
    assert after["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 3
    assert after["global_step"] == before["global_step"] * 3 // 2
    assert len(list_extractors(lstm_run / "artifacts" / "extractors")) == 2


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "train.py", "resume=true", f"hydra.run.dir={tmp_path}", f"paths.artifacts_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "resume=true but" in done.stderr


def test_cpu_training_is_deterministic(lstm_run, tmp_path):
    _train(tmp_path / "run", tmp_path / "artifacts", "model=lstm", "trainer.max_epochs=2")
    first = list_extractors(lstm_run / "artifacts" / "extractors")[0]
    [again] = list_extractors(tmp_path / "artifacts" / "extractors")
    assert again.meta["weights_sha256"] == first.meta["weights_sha256"]


def test_tcn_run_resume_and_listing(tmp_path):
    run = tmp_path / "run"
    _train(run, tmp_path / "artifacts", "model=tcn", "trainer.max_epochs=1")
    assert (run / "checkpoints" / "last.ckpt").is_file() and list((run / "tensorboard").glob("events.out.*"))
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    _train(run, tmp_path / "artifacts", "model=tcn", "trainer.max_epochs=2", "resume=true")
    after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert after["global_step"] == 2 * before["global_step"]
    first, artifact = list_extractors(tmp_path / "artifacts" / "extractors")
    assert artifact.meta["kind"] == "tcn" and artifact.meta["inputs"]["window"] == 168
    assert artifact.meta["inputs"]["columns"] == first.meta["inputs"]["columns"]
    assert len(artifact.meta["inputs"]["columns"]) == 8
    listing = subprocess.run(
        [sys.executable, "-m", "store.extractors", "--root", str(tmp_path / "artifacts" / "extractors")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0 and artifact.version in listing.stdout and "tcn" in listing.stdout


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_makes_one_checkpoint(tmp_path):
    _train(tmp_path / "run", tmp_path / "artifacts", "model=lstm", "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true", "trainer.max_epochs=1", timeout=400)
    assert len(list((tmp_path / "run" / "checkpoints").glob("epoch*.ckpt"))) == 1
    assert len(list_extractors(tmp_path / "artifacts" / "extractors")) == 1


def _groups():
    cfg = compose()
    return {k: OmegaConf.to_container(cfg[k]) for k in ("data", "features", "labels", "split")}


@pytest.mark.parametrize("kind", ["lstm", "tcn"])
def test_model_learns_a_tiny_real_slice(kind):
    """Real windows and labels: one batch of 64, trained repeatedly, is fitted well below the start loss."""
    L.seed_everything(0)
    dm_cls, net = (DailySequenceDataModule, LSTMExtractor(dropout=0.0)) if kind == "lstm" else (
        HourlyWindowDataModule, TCNExtractor(dropout=0.0))
    dm = dm_cls(**_groups(), fold=FOLD, batch_size=64)
    dm.setup("fit")
    labels = torch.tensor(dm.samples["train"]["label"].to_numpy())
    # The first 22 train samples of each class (64 in all): every class is in the slice.
    chosen = torch.cat([torch.nonzero(labels == c).flatten()[:22] for c in range(3)])[:64]
    x, y = dm.datasets["train"].__getitems__(chosen)
    assert len(x) == 64 and set(y.tolist()) == {0, 1, 2}
    module = ExtractorModule(net, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3))
    with torch.no_grad():
        module.eval()
        start = float(module.loss(net(x).logits, y))
    module.train()
    optimizer = module.configure_optimizers()
    for _ in range(150):
        optimizer.zero_grad()
        loss = module.loss(module(x).logits, y)
        loss.backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        end = float(module.loss(net(x).logits, y))
    assert end < 0.3 * start, (start, end)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_bf16_run(tmp_path):
    _train(tmp_path / "run", tmp_path / "artifacts", "model=tcn", "trainer=gpu", "trainer.max_epochs=1")
    assert json.loads(next((tmp_path / "artifacts").rglob("artifact.json")).read_text())["trainer"]["precision"] == (
        "bf16-mixed")
