"""train.py as a user runs it, on the shipped sample: checkpoints, TensorBoard, resume, artifacts, DDP."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from datamodules import DailySequenceDataModule, HourlyWindowDataModule
from features.build import load_feature_frames
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
    # The model's own max_epochs over the trainer's one (the main job shares one trainer between the kinds).
    _train(base / "run", base / "artifacts", "model=lstm", "trainer.max_epochs=1", "model.max_epochs=2")
    return base


def test_lstm_run_writes_checkpoints_tensorboard_and_an_artifact(lstm_run):
    run = lstm_run / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list(run.glob("checkpoints/epoch*.ckpt"))) == 1
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    [artifact] = list_extractors(lstm_run / "artifacts" / "extractors")
    meta = artifact.meta
    assert meta["kind"] == "lstm" and meta["fold"] == FOLD
    # The LSTM trains on all the history before its validation window (train_window: expanding) ...
    assert (meta["train_start"], meta["train_end"], meta["val_start"], meta["val_end"]) == (
        "2022-12-01", "2023-07-10", "2023-07-25", "2023-08-14")
    assert meta["split"]["window"] == "expanding"
    # ... on inputs less each day's mean over the coins, but for the market-wide ones.
    assert meta["normalization"]["cross_section"] == "demean"
    assert set(meta["inputs"]["columns"]) - set(meta["normalization"]["demeaned"]) == {
        "market_ret_1d", "fear_greed", "fear_greed_change_7d"}
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


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    """On a run of its own: resuming adds an epoch and an artifact, which the module's run must not get (the other
    tests read it as trained), and a copy of it would not do (Lightning resumes a moved run into last-v1.ckpt)."""
    run, artifacts = tmp_path / "run", tmp_path / "artifacts"
    _train(run, artifacts, "model=lstm", "trainer.max_epochs=2")
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    _train(run, artifacts, "model=lstm", "trainer.max_epochs=3", "resume=true")
    after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    # One more epoch from where it stopped, not three from scratch.
    assert before["loops"]["fit_loop"]["epoch_progress"]["total"]["started"] == 2
    assert after["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 3
    assert after["global_step"] == before["global_step"] * 3 // 2
    assert len(list_extractors(artifacts / "extractors")) == 2


def test_artifact_records_its_best_epoch_and_the_class_prior_loss(lstm_run):
    [artifact, *_] = list_extractors(lstm_run / "artifacts" / "extractors")
    metrics = artifact.meta["metrics"]
    # The kept checkpoint (save_top_k=1) is the best epoch's.
    [best] = (lstm_run / "run" / "checkpoints").glob("epoch*.ckpt")
    assert best.name.startswith(f"epoch{metrics['best_epoch']:03d}-") and 0 <= metrics["best_epoch"] < metrics["epochs"]
    # Balanced class weights make the prior the uniform prediction: its weighted loss is ln 3.
    assert artifact.meta["class_weights"] is not None
    assert metrics["prior_val_loss"] == pytest.approx(math.log(3), abs=1e-6)  # float32 class weights
    # The learning curve: one entry per epoch run, whose validation loss at the best epoch is the best one.
    curve = metrics["learning_curve"]
    assert [e["epoch"] for e in curve] == list(range(metrics["epochs"]))
    assert all(e["train_loss"] > 0 and e["val_loss"] > 0 for e in curve)
    # Every epoch trained: the model's 2 epochs over the trainer's 1 still moved the weights in the second.
    assert curve[0]["val_loss"] != curve[1]["val_loss"]
    best_val = min(e["val_loss"] for e in curve)
    assert curve[metrics["best_epoch"]]["val_loss"] == best_val
    assert best_val == pytest.approx(metrics["best_epoch_val_loss"], abs=1e-5)
    # Where the fit started: the seeded initialisation's validation loss, which the first epoch moved.
    assert math.isfinite(metrics["start_val_loss"]) and metrics["start_val_loss"] > 0
    assert abs(curve[0]["val_loss"] - metrics["start_val_loss"]) > 1e-4


def test_warm_start_loads_an_earlier_fold_and_refuses_a_later_one(tmp_path):
    _train(tmp_path / "early", tmp_path / "artifacts", "model=lstm", "trainer.max_epochs=1", "fold=3")
    [earlier] = list_extractors(tmp_path / "artifacts" / "extractors")
    # lr 0 and no weight decay: a warm-started fit keeps exactly the weights it started from.
    _train(tmp_path / "warm", tmp_path / "artifacts", "model=lstm", "trainer.max_epochs=1", f"init_from={earlier.path}",
           "model.optimizer.lr=0")
    warm = next(a for a in list_extractors(tmp_path / "artifacts" / "extractors") if a.meta["fold"] == FOLD)
    assert warm.meta["init_from"] == earlier.version
    start, end = earlier.load_state_dict(), warm.load_state_dict()
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    # The start's validation loss is the parent's weights' on this fold's window: with lr 0, epoch 0's.
    metrics = warm.meta["metrics"]
    assert metrics["start_val_loss"] == pytest.approx(metrics["learning_curve"][0]["val_loss"], abs=1e-5)
    assert metrics["start_val_loss"] == pytest.approx(metrics["val/loss"], abs=1e-6)
    # Fold 7's validation labels reach past the start of fold 5's test window.
    _train(tmp_path / "later", tmp_path / "artifacts", "model=lstm", "trainer.max_epochs=1", "fold=7")
    later = next(a for a in list_extractors(tmp_path / "artifacts" / "extractors") if a.meta["fold"] == 7)
    done = subprocess.run(
        [sys.executable, "train.py", f"fold={FOLD}", "model=lstm", f"init_from={later.path}",
         f"hydra.run.dir={tmp_path / 'bad'}", f"paths.artifacts_dir={tmp_path / 'artifacts'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "must come from an earlier fold" in done.stderr
    done = subprocess.run(
        [sys.executable, "train.py", f"fold={FOLD}", "model=tcn", f"init_from={earlier.path}",
         f"hydra.run.dir={tmp_path / 'bad'}", f"paths.artifacts_dir={tmp_path / 'artifacts'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "this run trains a tcn" in done.stderr


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
    assert len(artifact.meta["inputs"]["columns"]) == 6
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


def test_the_gpu_trainer_config_runs_its_bf16_path_on_a_cpu(tmp_path):
    """trainer=gpu's bf16 autocast and its unseeded kernels, exercised where CI has no GPU: one TCN epoch."""
    _train(tmp_path / "run", tmp_path / "artifacts", "model=tcn", "trainer=gpu", "trainer.accelerator=cpu",
           "trainer.max_epochs=1")
    meta = json.loads(next((tmp_path / "artifacts").rglob("artifact.json")).read_text())
    assert meta["trainer"] == {"accelerator": "cpu", "precision": "bf16-mixed"}
    assert math.isfinite(meta["metrics"]["val/loss"]) and meta["metrics"]["val/loss"] < 2 * math.log(3)


def test_the_main_job_chains_warm_starts_and_keys_each_fit_by_its_predecessor(tmp_path):
    """pipeline.warm_start: each fit of a kind starts from the previous one; a changed predecessor changes the key;
    extractors.<kind>.warm_start overrides it for that kind."""
    from pipeline import _train_cfg, extractor_folds, train_stage
    from splits.artifacts import folds_from_config
    from train import content_key

    cfg = compose("pipeline.warm_start=true", "stack.kinds=[lstm]", "trainer.max_epochs=1",
                  f"paths.artifacts_dir={tmp_path / 'artifacts'}", "pipeline.retrain_every_folds=3")
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    folds = folds_from_config(frames.daily, cfg.split, max(frames.horizons))
    chosen = extractor_folds(cfg, folds, folds)[:2]
    first, second = train_stage(cfg, frames, chosen, tmp_path / "out")["lstm"]
    assert first.meta["init_from"] is None and second.meta["init_from"] == first.version
    # The second fit's key holds the first's: the same config from a different start is another fit.
    keyed = _train_cfg(cfg, "lstm", chosen[1].index, tmp_path / "out")
    keyed.init_from = str(first.path)
    assert content_key(keyed) == second.meta["content_key"]
    keyed.init_from = None
    assert content_key(keyed) != second.meta["content_key"]
    # Unchanged: both reused, chained the same way.
    again = train_stage(cfg, frames, chosen, tmp_path / "out")["lstm"]
    assert [a.version for a in again] == [first.version, second.version]
    # The kind's own warm_start overrides the job's: the first fit is the same one (reused), the second is
    # trained from scratch.
    cfg.extractors.lstm.warm_start = False
    cold_first, cold_second = train_stage(cfg, frames, chosen, tmp_path / "out")["lstm"]
    assert cold_first.version == first.version and cold_second.meta["init_from"] is None
    assert cold_second.version != second.version


def test_a_kinds_train_window_replaces_the_splits_for_that_kind_only(tmp_path):
    """extractors.<kind>.train_window: that kind trains on its own window, on the same test windows."""
    from pipeline import _train_cfg
    from train import content_key, train_extractor, training_fold

    def kind_cfg(kind, lstm_window, tcn_window="rolling"):
        cfg = compose("trainer.max_epochs=1", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                      f"extractors.lstm.train_window={lstm_window}", f"extractors.tcn.train_window={tcn_window}")
        return _train_cfg(cfg, kind, 8, tmp_path / "out")

    expanding, rolling = kind_cfg("lstm", "expanding"), kind_cfg("lstm", "rolling")
    long, short = training_fold(expanding), training_fold(rolling)
    assert long.train_start < short.train_start and long.train_end == short.train_end
    assert (long.val_start, long.test_start, long.test_end) == (short.val_start, short.test_start, short.test_end)
    assert content_key(expanding) != content_key(rolling)
    # The TCN's key does not depend on the LSTM's window.
    assert content_key(kind_cfg("tcn", "expanding")) == content_key(kind_cfg("tcn", "rolling"))
    # null: the split's window (rolling).
    assert training_fold(kind_cfg("lstm", "null")) == short

    artifact = train_extractor(expanding)
    assert artifact.meta["split"]["window"] == "expanding"
    assert artifact.meta["train_start"] == str(long.train_start.date())
    # It trained on more windows than the rolling fit, validated and tested on the same ones.
    samples, rolling_samples = artifact.meta["samples"], train_extractor(rolling).meta["samples"]
    assert samples["train"] > rolling_samples["train"]
    assert (samples["val"], samples["test"]) == (rolling_samples["val"], rolling_samples["test"])


def test_a_kinds_max_epochs_replaces_the_shared_trainers_for_that_kind_only(tmp_path):
    from pipeline import _train_cfg, extractor_epochs
    from train import content_key, fit_epochs, with_fit_epochs

    def kind_cfg(kind, lstm_epochs):
        cfg = compose("trainer.max_epochs=1", f"extractors.lstm.max_epochs={lstm_epochs}")
        return cfg, _train_cfg(cfg, kind, 8, tmp_path / "out")

    (shared, lstm), (_, tcn) = kind_cfg("lstm", 4), kind_cfg("tcn", 4)
    assert (fit_epochs(lstm.model, lstm.trainer), fit_epochs(tcn.model, tcn.trainer)) == (4, 1)
    assert extractor_epochs(shared) == "lstm 4, tcn 1"
    # The cosine schedule spans the fit's 4 epochs, not the shared trainer's 1 (its rate would be 0 every 2nd epoch).
    assert with_fit_epochs(lstm).model.scheduler.T_max == 4 and with_fit_epochs(tcn).model.scheduler.T_max == 1
    assert lstm.trainer.max_epochs == 1  # the caller's config is left as it was
    assert content_key(lstm) != content_key(kind_cfg("lstm", "null")[1])  # 4 epochs are another training
    assert content_key(tcn) == content_key(kind_cfg("tcn", "null")[1])  # the TCN's key does not move
    with pytest.raises(ValueError, match="max_epochs must be at least 1"):
        zero = kind_cfg("lstm", 0)[1]
        fit_epochs(zero.model, zero.trainer)


def test_a_kinds_val_days_and_purge_days_move_its_windows_on_the_same_test_window(tmp_path):
    """extractors.<kind>.val_days / purge_days: that kind early-stops on its own validation window and
    purges only its label's horizon; the train window's end gives or takes the days, so its test window
    (the fold's number), the first day its outputs may be served, and the other kind stay as they were."""
    from pipeline import _train_cfg
    from store.feature_store import eligible_from
    from train import content_key, train_extractor, training_data_end, training_fold

    def kind_cfg(kind, val_days="null", purge_days="null"):
        cfg = compose("trainer.max_epochs=1", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                      "extractors.lstm.train_window=rolling", f"extractors.lstm.val_days={val_days}",
                      f"extractors.lstm.purge_days={purge_days}")
        return _train_cfg(cfg, kind, 8, tmp_path / f"out_{val_days}_{purge_days}")

    default, longer, recent = kind_cfg("lstm"), kind_cfg("lstm", val_days=42), kind_cfg("lstm", purge_days=3)
    split, long, short = training_fold(default), training_fold(longer), training_fold(recent)
    assert split.purge_days == 14 and (split.val_end - split.val_start).days + 1 == 21
    for fold in (long, short):
        assert (fold.test_start, fold.test_end) == (split.test_start, split.test_end)
        assert fold.train_start == split.train_start  # the rolling window keeps its first day
    # 42 validation days: taken from the train window's end, the validation window ends where it did.
    assert long.val_end == split.val_end and (long.val_end - long.val_start).days + 1 == 42
    assert long.train_end == split.train_end - pd.Timedelta(days=21)
    # Purging the 3-day label's horizon, not the longest (14 d): every window ends 11 or 22 days later.
    assert short.purge_days == 3 and short.val_end == split.test_start - pd.Timedelta(days=4)
    assert short.val_end == split.val_end + pd.Timedelta(days=11)
    assert short.train_end == split.train_end + pd.Timedelta(days=22)
    assert len({content_key(default), content_key(longer), content_key(recent)}) == 3
    # The data a fit reads ends with its last validation label (3 days after val_end): for the 3-day
    # purge, exactly when the test window begins, so bars of the test window never change its key.
    assert training_data_end(recent) == split.test_start and training_data_end(default) < split.test_start
    assert content_key(kind_cfg("tcn", purge_days=3)) == content_key(kind_cfg("tcn"))
    with pytest.raises(ValueError, match=r"purge_days=2 is shorter than the .*label horizon \(3 d\)"):
        training_fold(kind_cfg("lstm", purge_days=2))
    for bad in (0, 173):
        with pytest.raises(ValueError, match=rf"lstm: val_days={bad} and purge_days=14 leave"):
            training_fold(kind_cfg("lstm", val_days=bad))

    artifacts = {name: train_extractor(cfg) for name, cfg in
                 (("default", default), ("longer", longer), ("recent", recent))}
    assert artifacts["recent"].meta["purge_days"] == 3
    assert artifacts["longer"].meta["val_start"] == str(long.val_start.date())
    # Served from the same day: its labels end 22 days later, and so does the purge after them less 11.
    assert len({eligible_from(a.meta) for a in artifacts.values()}) == 1
    samples = {name: a.meta["samples"] for name, a in artifacts.items()}
    assert samples["longer"]["val"] > samples["default"]["val"] > 0
    assert samples["longer"]["train"] < samples["default"]["train"] < samples["recent"]["train"]
    assert samples["longer"]["test"] == samples["default"]["test"] == samples["recent"]["test"]


def test_a_kinds_patience_ends_its_training_and_keys_its_artifact(tmp_path):
    """model.early_stopping_patience: training stops that many epochs after the best validation loss."""
    from pipeline import _train_cfg
    from train import content_key

    _train(tmp_path / "run", tmp_path / "artifacts", "model=lstm", "trainer.max_epochs=12",
           "model.early_stopping_patience=1")
    metrics = json.loads(next((tmp_path / "artifacts").rglob("artifact.json")).read_text())["metrics"]
    assert metrics["epochs"] < 12 and metrics["epochs"] - 1 - metrics["best_epoch"] == 1
    losses = [e["val_loss"] for e in metrics["learning_curve"]]
    assert min(losses) == losses[metrics["best_epoch"]] and losses[-1] >= losses[metrics["best_epoch"]]

    def key(kind, patience):
        cfg = compose(f"extractors.{kind}.early_stopping_patience={patience}")
        return content_key(_train_cfg(cfg, kind, 8, tmp_path / "out"))

    assert key("tcn", 2) != key("tcn", 5)
    assert compose().extractors.tcn.early_stopping_patience == 2
    assert compose().trainer.max_epochs == 1  # the default: one pass a fit (experiments/32); patience is for more


# -- training recipe (issue 33) ---------------------------------------------------------------------------------------
def _val_windows(artifact, frames, part="val"):
    """The artifact's validation (or test) windows rebuilt from its own dates and saved normalisation (not the
    datamodule)."""
    from backfill.plan import normalised_inputs
    from datamodules.windows import window_end_mask

    meta = artifact.meta
    frame, values = normalised_inputs(artifact, frames, meta["feature_schema_hash"])
    day = frame["ts"].dt.floor("D")
    window = meta["inputs"]["window"]
    keep = (window_end_mask(frame["symbol"].to_numpy(), values, window)
            & day.between(pd.Timestamp(meta[f"{part}_start"], tz="UTC"), pd.Timestamp(meta[f"{part}_end"], tz="UTC"))
            .to_numpy()
            & frame[meta["label"]].notna().to_numpy())
    if meta["inputs"]["frame"] == "hourly":
        keep &= (frame["ts"].dt.hour == 23).to_numpy()
    ends = np.flatnonzero(keep)
    x = torch.from_numpy(values).unfold(0, window, 1)[torch.from_numpy(ends - (window - 1))]  # (N, C, T)
    return frame.iloc[ends], (x if meta["inputs"]["frame"] == "hourly" else x.transpose(1, 2))


def test_the_validation_ic_is_the_evaluations_daily_rank_ic_of_the_saved_network(lstm_run):
    from backfill.plan import trained_net
    from evaluation import daily_rank_ic

    [artifact, *_] = list_extractors(lstm_run / "artifacts" / "extractors")
    metrics = artifact.meta["metrics"]
    assert all(math.isfinite(e["val_ic"]) for e in metrics["learning_curve"])  # one per epoch, beside the losses
    assert math.isfinite(metrics["test/ic"]) and math.isfinite(metrics["start_val_ic"])
    g = _groups()
    rows, x = _val_windows(artifact, load_feature_frames(g["data"], g["features"], g["labels"]))
    with torch.inference_mode():
        probs = trained_net(artifact).eval()(x).logits.softmax(-1).numpy()
    ic = daily_rank_ic(pd.DataFrame({"date": rows["ts"].to_numpy(), "score": probs[:, 2] - probs[:, 0],
                                     "fwd_ret_3d": rows["fwd_ret_3d"].to_numpy()}))
    assert len(ic) == 21 and metrics["val/ic"] == pytest.approx(float(ic.mean()), abs=1e-5)
    assert metrics["learning_curve"][metrics["best_epoch"]]["val_ic"] == pytest.approx(metrics["val/ic"], abs=1e-5)


def test_weight_averaging_and_an_ic_monitor_keep_the_averaged_network_of_the_best_ic_epoch(tmp_path):
    """EMA weights are what is validated, checkpointed and saved; early stopping and the kept epoch follow val/ic."""
    from backfill.plan import trained_net
    from pipeline import _train_cfg
    from train import train_extractor

    cfg = compose("trainer.max_epochs=3", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                  "extractors.lstm.averaging.kind=ema", "extractors.lstm.averaging.decay=0.8",
                  "extractors.lstm.monitor=val/ic", "extractors.lstm.early_stopping_patience=1")
    run_cfg = _train_cfg(cfg, "lstm", FOLD, tmp_path / "out")
    artifact = train_extractor(run_cfg)
    metrics = artifact.meta["metrics"]
    curve = [e["val_ic"] for e in metrics["learning_curve"]]
    assert metrics["monitor"] == "val/ic" and curve[metrics["best_epoch"]] == max(curve)
    assert metrics["best_score"] == pytest.approx(max(curve), abs=1e-5)
    assert metrics["best_epoch_val_loss"] == metrics["learning_curve"][metrics["best_epoch"]]["val_loss"]
    # The saved network is the one validated: its own validation loss is the artifact's.
    g = _groups()
    frames = load_feature_frames(g["data"], g["features"], g["labels"])
    rows, x = _val_windows(artifact, frames)
    net = trained_net(artifact).eval()
    with torch.inference_mode():
        logits = net(x).logits
    y = torch.tensor(rows[artifact.meta["label"]].to_numpy(dtype="int64"))
    loss = torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor(artifact.meta["class_weights"]))
    assert float(loss) == pytest.approx(metrics["val/loss"], abs=1e-5)
    # ... and it is the average, not the last step's raw weights (which the checkpoint keeps apart).
    last = torch.load(tmp_path / "out" / "train" / "lstm" / f"fold_{FOLD:03d}" / "checkpoints" / "last.ckpt",
                      weights_only=True, map_location="cpu")
    raw = {k.removeprefix("net."): v for k, v in last["current_model_state"].items() if k.startswith("net.")}
    saved = artifact.load_state_dict()
    assert any(not torch.equal(saved[k], raw[k]) for k in saved if saved[k].is_floating_point())


def test_a_recipe_with_every_option_trains_one_ensemble_artifact_that_backfills_as_one(tmp_path):
    """Intraday training windows (a share of them), market context, augmentations, a listwise objective on
    whole-timestamp batches, warm-up + cosine, EMA, an IC monitor and two seeds: one artifact, backfilled like any
    other, whose stored probabilities are the mean of its members'."""
    from backfill import run_backfill
    from models.ensemble import member_state
    from pipeline import _train_cfg
    from store.feature_store import FeatureStore, eligible_from
    from train import train_extractor

    tcn = "extractors.tcn"
    cfg = compose("trainer.max_epochs=1", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                  f"store.root={tmp_path / 'store'}", "stack.kinds=[tcn]",
                  f"{tcn}.datamodule.stride_hours=6", f"{tcn}.datamodule.train_fraction=0.5",
                  f"{tcn}.datamodule.market_context=true", f"{tcn}.datamodule.augment.scale=0.1",
                  f"{tcn}.datamodule.augment.warp=0.05", f"{tcn}.datamodule.augment.mix=0.3",
                  f"model/objective@{tcn}.objective=listnet", f"model/scheduler@{tcn}.scheduler=warmup_cosine",
                  f"{tcn}.averaging.kind=ema", f"{tcn}.monitor=val/ic", f"{tcn}.ensemble.members=2")
    artifact = train_extractor(_train_cfg(cfg, "tcn", FOLD, tmp_path / "out"))
    meta = artifact.meta
    assert meta["net"]["_target_"] == "models.SeedEnsemble" and meta["net"]["members"] == 2
    assert meta["net"]["member"]["in_channels"] == 4 * 6  # each channel, its mean, dispersion and BTC's
    assert meta["inputs"]["market_context"] == {"symbol": "BTCUSDT", "columns": meta["inputs"]["columns"]}
    assert meta["train_stride_hours"] == 6 and meta["model"]["objective"]["listwise_weight"] == 0.5
    members = meta["metrics"]["members"]
    assert [m["seed"] for m in members] == [42, 43] and all(len(m["learning_curve"]) == 1 for m in members)
    assert math.isfinite(meta["metrics"]["val/ic"]) and members[0]["val/ic"] != members[1]["val/ic"]

    g = _groups()
    frames = load_feature_frames(g["data"], g["features"], g["labels"])
    run_backfill(cfg, frames, [artifact], [artifact], frames.dataset)
    table = FeatureStore(tmp_path / "store").read("tcn")
    assert (table["ts"].dt.hour == 23).all() and set(table["version"]) == {artifact.version}
    # The stored outputs are the mean of the two members' (the members rebuilt from the one artifact's weights),
    # on the test days the store serves it.
    rows, x = _val_windows(artifact, frames, "test")
    served = (rows["ts"] + pd.Timedelta(hours=1) >= eligible_from(meta)).to_numpy()
    rows, x = rows[served], x[torch.tensor(served)]
    assert len(rows) > 50
    state = artifact.load_state_dict()
    outputs = []
    for k in range(2):
        net = TCNExtractor(**{key: v for key, v in meta["net"]["member"].items() if key != "_target_"})
        net.load_state_dict(member_state(state, k))
        with torch.inference_mode():
            outputs.append(net.eval()(x))
    keys = pd.DataFrame({"symbol": rows["symbol"].to_numpy(), "decision_time": (rows["ts"] + pd.Timedelta(hours=1))})
    read = FeatureStore(tmp_path / "store").read_asof(keys, "tcn")
    mean_probs = (outputs[0].logits.softmax(-1) + outputs[1].logits.softmax(-1)).numpy() / 2
    np.testing.assert_allclose(read[["tcn_p_sell", "tcn_p_hold", "tcn_p_buy"]].to_numpy(), mean_probs, atol=1e-5)
    stored = keys.merge(table, on=["symbol", "decision_time"])
    mean_embedding = ((outputs[0].embedding + outputs[1].embedding) / 2).numpy()
    np.testing.assert_allclose(stored[[f"emb_{i}" for i in range(16)]].to_numpy(), mean_embedding, atol=1e-5)


def test_a_seed_ensemble_warm_starts_member_by_member_from_the_previous_folds_ensemble(tmp_path):
    """The main job's chain with model.ensemble.members=2: each member starts from the same member of the previous
    fold's ensemble (with a zero learning rate it keeps exactly those weights)."""
    from pipeline import extractor_folds, train_stage
    from splits.artifacts import folds_from_config

    cfg = compose("stack.kinds=[lstm]", "trainer.max_epochs=1", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                  "pipeline.retrain_every_folds=3", "extractors.lstm.ensemble.members=2",
                  "extractors.lstm.optimizer.lr=0")
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels")}
    frames = load_feature_frames(groups["data"], groups["features"], groups["labels"])
    folds = folds_from_config(frames.daily, cfg.split, max(frames.horizons))
    first, second = train_stage(cfg, frames, extractor_folds(cfg, folds, folds)[:2], tmp_path / "out")["lstm"]
    assert second.meta["init_from"] == first.version and second.meta["net"]["members"] == 2
    start, end = first.load_state_dict(), second.load_state_dict()
    assert start.keys() == end.keys() and any(k.startswith("members.1.") for k in end)
    assert all(torch.equal(start[k], end[k]) for k in start)
    # The two members differ (seeds 42 and 43 from the first fold's random initialisation on).
    assert not torch.equal(start["members.0.embedding_head.weight"], start["members.1.embedding_head.weight"])


def test_heads_for_other_horizons_train_with_the_fit_and_stay_out_of_the_artifact(tmp_path):
    """model/objective=horizons: the fit learns label_1d and label_7d beside label_3d, each head's classes weighted
    by its own train labels; the artifact holds the plain network (its keys and shapes), as any other fit's."""
    from train import train_extractor

    cfg = compose("model=lstm", "model/objective=horizons", "trainer.max_epochs=1", f"fold={FOLD}",
                  f"paths.output_dir={tmp_path / 'run'}", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                  config_name="train")
    artifact = train_extractor(cfg)
    meta = artifact.meta
    assert meta["model"]["objective"]["aux_labels"] == ["label_1d", "label_7d"]
    assert np.array(meta["aux_class_weights"]).shape == (2, 3) and meta["aux_class_weights"][0] != meta["class_weights"]
    net = LSTMExtractor(**{k: v for k, v in meta["net"].items() if k != "_target_"})
    state = artifact.load_state_dict()
    assert set(state) == set(net.state_dict())
    net.load_state_dict(state)
    curve = meta["metrics"]["learning_curve"]
    assert len(curve) == 1 and math.isfinite(meta["metrics"]["val/loss"])
