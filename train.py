"""Train one extractor on one walk-forward fold; save a versioned artifact.

    python train.py model=lstm fold=3                     # CPU, the shipped sample
    python train.py model=tcn trainer=gpu data=full fold=40
    python train.py -m model=lstm,tcn fold=0,1,2          # multirun over models and folds
    python train.py model=lstm fold=3 hydra.run.dir=<run> resume=true   # continue that run
    python train.py model=tcn fold=4 init_from=artifacts/extractors/tcn/fold_002/<version>  # warm start
    python train.py model=tcn model/objective=listnet model/scheduler=warmup_cosine model.ensemble.members=3

Early stopping watches the validation loss (or the validation daily rank IC: `model.monitor=val/ic`);
the best checkpoint's network is saved with what it was trained on (store/extractors.py), its best
epoch, the validation loss of the weights it started from and that of the class prior (the constant
prediction a fit must beat), and the learning curve (loss and IC per epoch). `init_from` warm-starts
the network from an earlier fold's artifact of the same kind and shape (the main job chains each
fold to the previous one).

The training recipe (issue 33) is the model config's, every option off by default: `objective` (a
listwise loss beside the cross-entropy), `scheduler` (warm-up and decay), `averaging` (EMA / SWA),
`monitor`, `ensemble.members` (K seeds in one artifact) and the datamodule's `stride_hours`,
`train_fraction`, `market_context` and `augment`.
`python -m store.extractors` lists the trained extractors.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from cli import command, console
from datamodules import FoldWindowDataModule
from datamodules.windows import IGNORE
from features.build import FeatureFrames, label_horizon_days, parse_horizons
from features.labels import CLASS_NAMES
from models import ExtractorModule, SeedEnsemble, balanced_class_weights
from models.ensemble import member_state
from models.learning_curve import LearningCurve
from splits import Fold
from splits.artifacts import folds_from_config
from store.extractors import (
    ExtractorArtifact,
    code_revision,
    data_fingerprint,
    data_prefix_fingerprint,
    data_span,
    input_spec,
    read_extractor,
    save_extractor,
    schema_hash,
)
from store.lineage import source_hash

CONFIG_GROUPS = ("data", "features", "labels", "split")
N_CLASSES = len(CLASS_NAMES)
INPUT_SIZE_KEYS = ("in_channels", "n_features")  # the TCN's and the LSTM's input size
MONITOR_MODES = {"val/loss": "min", "val/ic": "max"}


def _metrics(results: list[dict]) -> dict[str, float]:
    return {k: float(v) for result in results for k, v in result.items()}


def _artifact_meta(cfg: DictConfig, dm: FoldWindowDataModule, metrics: dict, weights: list[float] | None) -> dict:
    groups = extractor_groups(cfg)
    label = cfg.labels.primary
    horizon = label_horizon_days(label)
    inputs = input_spec(dm.frame_kind, dm.columns, dm.window, groups["features"], groups["data"], dm.context)
    return {
        "kind": cfg.model.kind,
        "fold": dm.fold.index,
        **{k: v for k, v in dm.fold.to_dict().items() if k != "index"},
        "label": label,
        "label_horizon_days": horizon,
        "label_thresholds": groups["labels"]["thresholds"],
        "split": groups["split"],
        "inputs": inputs,
        "feature_schema_hash": schema_hash(inputs),
        "normalization": dm.normalizer.to_dict(),
        "net": net_config(cfg, len(dm.input_columns)),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data_paths": [cfg.data.hourly_path, cfg.data.fear_greed_path],
        "data_fingerprint": data_fingerprint(cfg.data),
        "dataset": dm.dataset,
        "code_revision": code_revision(Path(__file__).parent),
        "source_hash": source_hash("extractor"),
        "samples": {part: len(frame) for part, frame in dm.samples.items()},
        "train_stride_hours": getattr(dm, "stride_hours", None),
        "class_weights": weights,
        "trainer": {"accelerator": str(cfg.trainer.accelerator), "precision": str(cfg.trainer.precision)},
        "metrics": metrics,
        "seed": cfg.seed,
    }


def ensemble_members(cfg: DictConfig) -> int:
    members = int(cfg.model.get("ensemble", {}).get("members", 1))
    if members < 1:
        raise ValueError(f"model.ensemble.members must be >= 1, got {members}")
    return members


def net_config(cfg: DictConfig, n_inputs: int | None = None) -> dict:
    """The network's config as the artifact saves it: `model.net` with its input size set to the inputs the
    datamodule serves (market context adds some), as a SeedEnsemble of its members when there are several."""
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    if n_inputs is not None:
        net[next(k for k in INPUT_SIZE_KEYS if k in net)] = n_inputs
    members = ensemble_members(cfg)
    return net if members == 1 else {"_target_": "models.SeedEnsemble", "member": net, "members": members}


def _input_size(net: dict) -> int:
    net = net.get("member", net)
    return int(next(net[k] for k in INPUT_SIZE_KEYS if k in net))


def prior_loss(datamodule: FoldWindowDataModule, weights: list[float] | None) -> float:
    """The validation loss of the class prior: the constant prediction that minimises the (weighted) training
    loss, i.e. the train class shares reweighted by the class weights (uniform when they are balanced).
    A fit whose validation loss is not below it has learnt nothing that transfers."""
    train = datamodule.samples["train"]["label"].to_numpy(dtype="int64")
    val = datamodule.samples["val"]["label"].to_numpy(dtype="int64")
    w = np.ones(N_CLASSES) if weights is None else np.asarray(weights, dtype="float64")
    prior = np.bincount(train, minlength=N_CLASSES) * w
    prior = prior / prior.sum()
    # The module's loss: the class-weighted mean of -log p(label) over the validation samples.
    return float(np.sum(w[val] * -np.log(prior[val])) / np.sum(w[val]))


def extractor_groups(cfg: DictConfig) -> dict[str, dict]:
    """The config groups this extractor trains on (CONFIG_GROUPS), the split's train window (`window`),
    validation length (`val_days`) and purges (`purge_days`) replaced by the model's where it sets them:
    a longer history costs each kind differently, and an extractor learns one label, whose horizon
    may be shorter than the longest the split purges for. Test windows, and so fold numbers, are the
    same either way: the train window's end gives and takes the days the other windows change by."""
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in CONFIG_GROUPS}
    split = groups["split"]
    if cfg.model.get("train_window") is not None:
        split["window"] = cfg.model.train_window
    val_days, purge_days = cfg.model.get("val_days"), cfg.model.get("purge_days")
    if val_days is not None or purge_days is not None:
        split_purge = split["purge_days"]
        if split_purge is None:
            split_purge = max(parse_horizons(cfg.labels.thresholds))
        # The test anchor lies train + purge + val + purge days after the first day: keep that sum.
        shared = split["train_days"] + split["val_days"] + 2 * split_purge
        val_days = split["val_days"] if val_days is None else val_days
        purge_days = split_purge if purge_days is None else purge_days
        train_days = shared - val_days - 2 * purge_days
        if val_days < 1 or purge_days < 0 or train_days < 1:
            raise ValueError(f"{cfg.model.kind}: val_days={val_days} and purge_days={purge_days} leave its train "
                             f"window {train_days} days of the {shared} its train, purge and validation windows "
                             "share (split.train_days + split.val_days + 2 split.purge_days)")
        split |= {"train_days": train_days, "val_days": val_days, "purge_days": purge_days}
    return groups


def fit_epochs(model: DictConfig, trainer: DictConfig) -> int:
    """The most epochs a fit of extractor `model` runs: its `max_epochs`, or the trainer's (which both kinds
    share in the main job) where it sets none."""
    epochs = model.get("max_epochs")
    epochs = trainer.max_epochs if epochs is None else epochs
    if int(epochs) < 1:
        raise ValueError(f"{model.kind}: max_epochs must be at least 1, got {epochs}")
    return int(epochs)


def with_fit_epochs(cfg: DictConfig) -> DictConfig:
    """`cfg` with trainer.max_epochs set to this fit's epochs (`fit_epochs`), so that every value read from it
    follows them: the cosine schedule's T_max (`${trainer.max_epochs}`) spans the fit, where left at the
    shared trainer's 1 it would drop the learning rate to 0 in every second epoch."""
    epochs = fit_epochs(cfg.model, cfg.trainer)
    if cfg.trainer.max_epochs == epochs:
        return cfg
    fit = copy.deepcopy(cfg)
    fit.trainer.max_epochs = epochs
    return fit


def content_key(cfg: DictConfig) -> str:
    """A hash of everything a trained extractor depends on: same key, same training (on CPU, bit for bit).

    Data: only the bars and Fear & Greed values its fold's training can see (up to its validation
    labels' end), so appending new bars keeps the keys of the folds trained before them. Code: the
    source that shapes training (`store.lineage.SOURCES["extractor"]`): after a fix there, nothing
    the old code trained is reused."""
    cfg = with_fit_epochs(cfg)
    # The model's warm_start is the main job's choice of init_from, which the key holds as "init" below.
    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "warm_start"}
    spec = extractor_groups(cfg) | {"model": model}
    spec["split"] = {k: v for k, v in spec["split"].items() if k not in ("first_test_date", "last_test_date")}
    # The data by content, not by where it lies (the daily command serves the same bars from its history).
    spec["data"] = {k: spec["data"].get(k) for k in ("gaps", "max_gap_hours", "on_bad_symbol")}
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    spec["trainer"] = {k: trainer.get(k) for k in ("max_epochs", "precision", "gradient_clip_val", "accelerator")}
    spec |= {"fold": cfg.fold, "seed": cfg.seed, "compile": cfg.compile,
             "data_fingerprint": data_prefix_fingerprint(cfg.data, training_data_end(cfg)),
             "source": source_hash("extractor"),
             # A warm start inherits everything its initial weights were trained on.
             "init": None if cfg.get("init_from") is None else warm_start_artifact(cfg).meta["content_key"]}
    return schema_hash(spec)


def warm_start_artifact(cfg: DictConfig) -> ExtractorArtifact:
    """The artifact `cfg.init_from` names, checked to fit: same kind and network, and trained on data
    (its validation labels included) that ends before this fold's test window begins."""
    artifact = read_extractor(cfg.init_from)
    net = net_config(cfg, _input_size(artifact.meta["net"]))
    context = bool(artifact.meta["inputs"].get("market_context")) == bool(cfg.model.datamodule.get("market_context"))
    if artifact.meta["kind"] != cfg.model.kind or artifact.meta["net"] != net or not context:
        raise ValueError(f"init_from={cfg.init_from} is a {artifact.meta['kind']} with net {artifact.meta['net']} "
                         f"and inputs {artifact.meta['inputs']['columns']} (market context "
                         f"{artifact.meta['inputs'].get('market_context')}); this run trains a {cfg.model.kind} with "
                         f"net {net} (market context {cfg.model.datamodule.get('market_context', False)})")
    seen_until = pd.Timestamp(artifact.meta["val_end"], tz="UTC") + pd.Timedelta(
        days=1 + int(artifact.meta["label_horizon_days"]))
    test_start = training_fold(cfg).test_start
    if seen_until > test_start:
        raise ValueError(f"init_from={cfg.init_from} (fold {artifact.meta['fold']}) read labels up to "
                         f"{seen_until.date()}, past the start of fold {cfg.fold}'s test window "
                         f"({test_start.date()}): a warm start must come from an earlier fold")
    return artifact


def training_fold(cfg: DictConfig) -> Fold:
    """Fold `cfg.fold` as the split config numbers it over the whole data (whatever test dates it selects)."""
    first, last = data_span(cfg.data)
    # The purges must cover the horizon of the label the extractor learns (the split's default covers the longest).
    horizon = label_horizon_days(cfg.labels.primary)
    split = {**extractor_groups(cfg)["split"], "first_test_date": None, "last_test_date": None, "open_last_fold": True}
    days = pd.DataFrame({"ts": [first.floor("D"), last.floor("D")]})
    folds = {f.index: f for f in folds_from_config(days, split, max(parse_horizons(cfg.labels.thresholds)), horizon)}
    if cfg.fold not in folds:
        raise ValueError(f"fold {cfg.fold} is not among the folds the split config produces ({sorted(folds)})")
    return folds[cfg.fold]


def training_data_end(cfg: DictConfig) -> pd.Timestamp:
    """The first time fold `cfg.fold`'s training does not read: its last validation day's close plus the
    horizon of the label it learns (features before it are point in time, that label reaches that far;
    the other horizons' labels are not read)."""
    return training_fold(cfg).val_end + pd.Timedelta(days=1 + label_horizon_days(cfg.labels.primary))


def train_extractor(cfg: DictConfig, frames: FeatureFrames | None = None) -> ExtractorArtifact | None:
    """Train `cfg.model` on fold `cfg.fold`; the saved artifact on rank 0 (None on other ranks).

    `frames`: feature frames already built from the same config (the main job passes its own).
    With `model.ensemble.members` K > 1, K fits of seeds seed, seed + 1, ... on the same windows make one
    artifact (models.SeedEnsemble); its metrics are the ensemble's, its members' are under `members`.
    """
    cfg = with_fit_epochs(cfg)
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    groups = extractor_groups(cfg)
    # Partial, then called: the frames are objects, not config, and must not pass through OmegaConf.
    make_datamodule = instantiate(cfg.model.datamodule, **groups, fold=cfg.fold, _partial_=True)
    datamodule: FoldWindowDataModule = make_datamodule(frames=frames)
    datamodule.setup("fit")  # the class weights come from this fold's train labels
    weights = aux_weights = None
    if cfg.model.class_weighting == "balanced":
        weights = balanced_class_weights(datamodule.samples["train"]["label"].to_numpy(copy=True)).tolist()
        # Each other horizon's head weighs its own label's classes (the windows where that label is known).
        aux = datamodule.samples["train"][list(datamodule.aux_labels)].to_numpy(copy=True)
        aux_weights = [balanced_class_weights(classes[classes != IGNORE]).tolist() for classes in aux.T] or None
    elif cfg.model.class_weighting != "none":
        raise ValueError(f"model.class_weighting must be 'balanced' or 'none', got {cfg.model.class_weighting!r}")
    members = ensemble_members(cfg)
    if members > 1 and (cfg.resume or cfg.ckpt_path is not None):
        raise ValueError("resume / ckpt_path continue one fit: not available for seed ensembles "
                         "(model.ensemble.members > 1)")
    warm_start = None if cfg.get("init_from") is None else warm_start_artifact(cfg)
    fits = [_fit(cfg, datamodule, (weights, aux_weights), warm_start, k, out) for k in range(members)]
    if members == 1:
        [(plain_net, metrics, trainer)] = fits
    else:
        plain_net = SeedEnsemble(net_config(cfg, len(datamodule.input_columns))["member"], members,
                                 nets=[net for net, _, _ in fits])
        metrics, trainer = _ensemble_metrics(cfg, datamodule, plain_net, weights, fits), fits[-1][2]
    if not trainer.is_global_zero:
        return None
    meta = _artifact_meta(cfg, datamodule, metrics, weights) | {"aux_class_weights": aux_weights,
        "content_key": content_key(cfg), "init_from": None if warm_start is None else warm_start.version}
    return save_extractor(Path(cfg.paths.artifacts_dir) / "extractors", plain_net, meta)


def _fit(cfg: DictConfig, datamodule: FoldWindowDataModule, class_weights: tuple[list | None, list | None],
         warm_start: ExtractorArtifact | None, member: int, out: Path) -> tuple[torch.nn.Module, dict, L.Trainer]:
    """One fit (ensemble member `member`, seed cfg.seed + member): its best network, metrics and trainer.
    `class_weights`: the primary label's and the aux labels' (None: unweighted)."""
    weights, aux_weights = class_weights
    if member > 0:  # member 0 is the single fit: seeded once, at the start, as always
        L.seed_everything(cfg.seed + member, workers=True)
    n_inputs = len(datamodule.input_columns)
    net_cfg = net_config(cfg, n_inputs)
    net_cfg = net_cfg.get("member", net_cfg)
    configured = OmegaConf.to_container(cfg.model.net, resolve=True)
    net = instantiate(cfg.model.net, **{k: v for k, v in net_cfg.items() if configured.get(k) != v})
    if warm_start is not None:
        try:
            net.load_state_dict(member_state(warm_start.load_state_dict(), member))
        except RuntimeError as error:  # e.g. an artifact made by older code, with other head shapes
            raise ValueError(f"init_from={cfg.init_from}: its weights do not fit this {cfg.model.kind} network "
                             f"(made by extractor source {warm_start.meta.get('source_hash')}, this is "
                             f"{source_hash('extractor')}): {error}") from error
    module = ExtractorModule(
        net=torch.compile(net) if cfg.compile else net,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        class_weights=weights,
        objective=instantiate(cfg.model.objective) if cfg.model.get("objective") else None,
        aux_class_weights=aux_weights,
    )

    monitor = cfg.model.get("monitor", "val/loss")
    if monitor not in MONITOR_MODES:
        raise ValueError(f"model.monitor must be one of {list(MONITOR_MODES)}, got {monitor!r}")
    checkpoints = out / "checkpoints" if member == 0 else out / "checkpoints" / f"member_{member}"
    checkpoint = ModelCheckpoint(
        dirpath=checkpoints, monitor=monitor, mode=MONITOR_MODES[monitor], save_last=True,
        filename="epoch{epoch:03d}-val_loss{val/loss:.4f}", auto_insert_metric_name=False,
    )
    early_stopping = EarlyStopping(monitor=monitor, mode=MONITOR_MODES[monitor],
                                   patience=cfg.model.early_stopping_patience)
    curve = LearningCurve()
    averaging = instantiate(cfg.model.averaging) if cfg.model.get("averaging") else None
    callbacks = [checkpoint, early_stopping, curve, LearningRateMonitor(logging_interval="epoch")]
    callbacks += [averaging] if averaging is not None else []
    logger = TensorBoardLogger(save_dir=str(out), name="tensorboard", version="" if member == 0 else f"member_{member}")
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(out))

    ckpt_path = cfg.ckpt_path
    if cfg.resume and ckpt_path is None:
        ckpt_path = checkpoints / "last.ckpt"
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"resume=true but {ckpt_path} does not exist (give the run's hydra.run.dir)")
    # The validation loss of the weights the fit starts from (the warm-start parent's, or the seeded
    # initialisation's). A first epoch below it learned from this fold's data, which "best epoch 0" alone
    # cannot tell from weights that never moved. Each DataLoader iterator draws a seed from torch's global
    # generator: forking it keeps this look from changing the training's shuffles.
    with torch.random.fork_rng(devices=[]):
        start = _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if averaging is not None:
        # Checkpoints hold the averaged weights: read them as saved, not swapped for the raw ones.
        trainer.callbacks.remove(averaging)

    # The best epoch's weights, judged on validation; the test window is scored once, for the record.
    # Early stopping counts the epochs since the best one (0-based epochs; the checkpoint keeps that one).
    best_epoch = trainer.current_epoch - 1 - early_stopping.wait_count
    best_val_loss = (float(checkpoint.best_model_score) if monitor == "val/loss"
                     else curve.epochs[best_epoch]["val_loss"])
    metrics = {"best_epoch_val_loss": best_val_loss, "epochs": trainer.current_epoch,
               "best_epoch": best_epoch, "start_val_loss": start["val/loss"],
               "prior_val_loss": prior_loss(datamodule, weights),
               "learning_curve": curve.epochs}
    if monitor != "val/loss":
        metrics |= {"monitor": monitor, "best_score": float(checkpoint.best_model_score)}
    if "val/ic" in start:
        metrics["start_val_ic"] = start["val/ic"]
    with warnings.catch_warnings():
        if averaging is not None:  # Lightning's warning that the checkpoint's callbacks are missing: on purpose
            warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint.*")
        metrics |= _metrics(trainer.validate(module, datamodule=datamodule, ckpt_path="best", verbose=False))
        metrics |= _metrics(trainer.test(module, datamodule=datamodule, ckpt_path="best", verbose=False))
    return getattr(module.net, "_orig_mod", module.net), metrics, trainer  # unwrap torch.compile


MEMBER_KEYS = ("epochs", "best_epoch", "start_val_loss", "val/loss", "val/ic", "test/loss", "test/ic",
               "learning_curve")


def _ensemble_metrics(cfg: DictConfig, datamodule: FoldWindowDataModule, ensemble: SeedEnsemble,
                      weights: list[float] | None, fits: list) -> dict:
    """The ensemble's validation and test metrics, beside its first member's fit record (epochs, learning curve,
    start and prior losses: the keys a single fit has) and every member's own under `members`."""
    first = fits[0][1]
    metrics = {k: v for k, v in first.items() if not k.startswith(("val/", "test/"))}
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                                     enable_progress_bar=False, enable_model_summary=False)
    module = ExtractorModule(ensemble, class_weights=weights)
    metrics |= _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    metrics |= _metrics(trainer.test(module, datamodule=datamodule, verbose=False))
    metrics["members"] = [{"seed": cfg.seed + k, **{key: m.get(key) for key in MEMBER_KEYS}}
                          for k, (_, m, _) in enumerate(fits)]
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@command
def main(cfg: DictConfig) -> None:
    artifact = train_extractor(cfg)
    if artifact is not None:
        console.print(f"train: {fit_line(artifact)}", soft_wrap=True)
        console.print(f"train: saved to {artifact.path} (list them all with python -m store.extractors)")


def fit_line(artifact: ExtractorArtifact) -> str:
    """What a fit learned, in one line: epochs, the best one, its validation loss against the loss of the
    weights it started from and the class prior's (the constant a fit must beat), the test macro-F1."""
    metrics = artifact.meta["metrics"]
    below = "below" if metrics["val/loss"] < metrics["prior_val_loss"] else "NOT below"
    members = len(metrics.get("members", ())) or 1
    return (f"{artifact.meta['kind']} fold {artifact.meta['fold']}: {metrics['epochs']} epochs (best "
            f"{metrics['best_epoch']}){f', {members} seeds averaged' if members > 1 else ''}, val loss "
            f"{metrics['val/loss']:.4f} (start {metrics['start_val_loss']:.4f}, prior {metrics['prior_val_loss']:.4f}: "
            f"{below} the prior's), val IC {metrics.get('val/ic', float('nan')):+.3f}, test macro-F1 "
            f"{metrics.get('test/f1_macro', float('nan')):.3f} -> {artifact.version}")


if __name__ == "__main__":
    main()
