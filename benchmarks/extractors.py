"""Training and inference speed of both extractors: Lightning against a bare PyTorch loop, and GFLOP/s.

    python benchmarks/extractors.py [--batch-size 256] [--device cpu|cuda] [--seconds 1] [--rounds 5]

Prints, from one run, for the LSTM (windows of 30 days x 12 features) and the TCN (6 channels x 168
hours) on the real train windows of one walk-forward fold (--fold 5) of the shipped sample, read
over several epochs (passes) since a fold holds only about a thousand of them:

* training samples/s: `Trainer.fit` of the ExtractorModule as shipped (each step it updates accuracy,
  F1 and three AUROCs and calls `self.log` six times; each epoch end computes them) against a bare
  loop (forward, the module's loss, backward, AdamW step) over the same DataLoader, batch size,
  epochs and shuffles; and `Trainer.fit` of the module less its metrics, which isolates their cost.
  The time the module's `self.log` calls take inside the Lightning fit is printed apart (a subclass
  adds it up; nothing else differs from the module as shipped). Target: Lightning >= 0.9x the bare loop.
* inference samples/s: `Trainer.predict` against a bare `torch.inference_mode()` loop of
  `net.eval()(x)` over the same loader. Target: Lightning >= 0.9x the bare loop.
* achieved GFLOP/s: FLOPs per sample counted by FlopCounterMode (matmuls and convolutions, 2 per
  multiply-add; forward for inference, forward + backward for training) times samples/s, against a
  float32 matmul timed in the same run. Target for the TCN: >= 35% of the matmul.

Each model is warmed up first (a bare and a Lightning epoch, a bare and a Lightning pass). Then
--rounds rounds run every path in turn for about --seconds each (whole epochs / passes), and a
path's rate is its median round: interleaved, the paths share the machine's drift, and "spread"
shows how much the rounds differed. Rates span whole epochs (Lightning's epoch-end metric
computation included) but not a fit / predict call's set-up and tear-down, shown apart as "call s".
About 1.5 minutes on 2 CPU cores; `--device cuda` gives the same figures on a GPU.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and benchmarks/features.py would shadow
# the `features` package: put the repo root first instead.
sys.path[0] = str(ROOT)

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from benchmarks.measure import flops_per_sample, matmul_gflops, now  # noqa: E402
from datamodules import DailySequenceDataModule, FoldWindowDataModule, HourlyWindowDataModule  # noqa: E402
from datamodules.windows import WindowDataset  # noqa: E402
from models import ExtractorModule, LSTMExtractor, TCNExtractor, balanced_class_weights  # noqa: E402

MODELS = {"lstm": (LSTMExtractor, DailySequenceDataModule), "tcn": (TCNExtractor, HourlyWindowDataModule)}
LIGHTNING_TARGET, TCN_MATMUL_TARGET = 0.9, 0.35
BARE_TRAIN, LIGHTNING_TRAIN, NO_METRICS_TRAIN = "bare loop", "Lightning fit", "Lightning fit, no metrics"
BARE_INFER, LIGHTNING_INFER = "bare inference_mode", "Lightning predict"


# -- set-up -----------------------------------------------------------------------------------------
def _groups(data: str) -> dict:
    """The data / features / labels / split config groups the main job composes; data paths made absolute."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=[f"data={data}"])
    groups = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "features", "labels", "split")}
    for key in ("hourly_path", "fear_greed_path"):
        groups["data"][key] = str(ROOT / groups["data"][key])  # a no-op for absolute paths
    return groups


def _datamodule(kind: str, groups: dict, args) -> FoldWindowDataModule:
    dm = MODELS[kind][1](**groups, fold=args.fold, batch_size=args.batch_size, device=args.device)
    dm.setup("fit")
    return dm


class _NoMetrics(ExtractorModule):
    """The ExtractorModule less its per-step metric updates and `self.log` calls: isolates their cost."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss(self.net(x).logits, y)


class _LogTimed(ExtractorModule):
    """The ExtractorModule as shipped, adding up the time its `self.log` calls take (over all instances)."""

    seconds = 0.0

    def log(self, *args, **kwargs) -> None:
        start = time.perf_counter()
        super().log(*args, **kwargs)
        _LogTimed.seconds += time.perf_counter() - start


def _module(kind: str, class_weights: list[float], seed: int, cls: type = ExtractorModule) -> ExtractorModule:
    """A fresh network in an ExtractorModule, all RNGs seeded: the same weights, shuffles and dropout
    masks on every path and round."""
    L.seed_everything(seed, verbose=False)
    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
    return cls(MODELS[kind][0](), optimizer=optimizer, class_weights=class_weights)


def _passes_loader(dataset: WindowDataset, batch_size: int, passes: int) -> DataLoader:
    """`passes` in-order reads of the dataset as one loader: one predict call, one bare loop."""
    return DataLoader(dataset, batch_size=batch_size, sampler=list(range(len(dataset))) * passes,
                      collate_fn=WindowDataset.collate_fn)


# -- the four paths; each returns (seconds timed, seconds of the call outside them) ----------------
class _Clock(Callback):
    """Wall-clock marks around the epochs of fit / predict, so that Trainer set-up can be left out."""

    def __init__(self, device: torch.device):
        self.device, self.start, self.end = device, None, None

    def _start(self, *_):
        if self.start is None:
            self.start = now(self.device)

    def _end(self, *_):
        self.end = now(self.device)

    on_train_epoch_start = on_predict_epoch_start = _start
    on_train_end = on_predict_end = _end


def _trainer(args, clock: _Clock, epochs: int = 1) -> L.Trainer:
    gpu = args.device.type == "cuda"
    return L.Trainer(
        max_epochs=epochs, accelerator="gpu" if gpu else "cpu", devices=[args.device.index or 0] if gpu else 1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[clock],
    )


def _lightning(call: Callable[[], object], clock: _Clock, device: torch.device) -> tuple[float, float]:
    start = now(device)
    call()
    total = now(device) - start
    timed = clock.end - clock.start
    return timed, total - timed


def bare_fit(module: ExtractorModule, loader: DataLoader, epochs: int, args) -> tuple[float, float]:
    module.to(args.device).train()
    optimizer = module.configure_optimizers()
    start = now(args.device)
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = module.loss(module.net(x).logits, y)
            loss.backward()
            optimizer.step()
    return now(args.device) - start, 0.0


def lightning_fit(module: ExtractorModule, loader: DataLoader, epochs: int, args) -> tuple[float, float]:
    clock = _Clock(args.device)
    trainer = _trainer(args, clock, epochs)
    return _lightning(lambda: trainer.fit(module, train_dataloaders=loader), clock, args.device)


def bare_predict(module: ExtractorModule, loader: DataLoader, args) -> tuple[float, float]:
    net = module.net.to(args.device).eval()
    outputs = []
    start = now(args.device)
    with torch.inference_mode():
        for x, _ in loader:
            outputs.append(net(x))  # kept, as trainer.predict keeps its outputs
    return now(args.device) - start, 0.0


def lightning_predict(module: ExtractorModule, loader: DataLoader, args) -> tuple[float, float]:
    clock = _Clock(args.device)
    trainer = _trainer(args, clock)
    return _lightning(lambda: trainer.predict(module, dataloaders=loader), clock, args.device)


# -- one model --------------------------------------------------------------------------------------
def _rounds(paths: dict[str, Callable[[], tuple[float, float]]], samples: int, rounds: int) -> dict[str, dict]:
    """Every path in turn, `rounds` times; the first path is the bare loop the others are compared with.

    rate: median samples/s; ratio: median of the rate over the bare loop's in the same round (paired,
    so that the machine's drift cancels); spread: (fastest - slowest round) / median; call_s: median
    set-up and tear-down of a call; seconds: all the timed rounds together.
    """
    runs = {name: [] for name in paths}
    for _ in range(rounds):
        for name, run in paths.items():
            runs[name].append(run())
    bare = [samples / timed for timed, _ in next(iter(runs.values()))]
    results = {}
    for name, times in runs.items():
        rates = [samples / timed for timed, _ in times]
        median = statistics.median(rates)
        results[name] = {
            "rate": median,
            "ratio": statistics.median(rate / base for rate, base in zip(rates, bare, strict=True)),
            "spread": (max(rates) - min(rates)) / median,
            "call_s": statistics.median(call for _, call in times),
            "seconds": sum(timed for timed, _ in times),
        }
    return results


def bench_training(kind: str, loader: DataLoader, weights: list[float], args) -> tuple[dict, int, float]:
    """Training paths: their results, the epochs a round, and the seconds a step spent in `self.log`."""
    modules = {BARE_TRAIN: ExtractorModule, LIGHTNING_TRAIN: _LogTimed, NO_METRICS_TRAIN: _NoMetrics}

    def run(path: str, epochs: int) -> tuple[float, float]:
        module = _module(kind, weights, args.seed, modules[path])
        return (bare_fit if path == BARE_TRAIN else lightning_fit)(module, loader, epochs, args)

    run(BARE_TRAIN, 1)  # warm-up: kernels chosen, caches filled, lazy imports done
    epochs = max(1, round(args.seconds / run(LIGHTNING_TRAIN, 1)[0]))
    _LogTimed.seconds = 0.0
    paths = {path: functools.partial(run, path, epochs) for path in modules}
    results = _rounds(paths, epochs * len(loader.dataset), args.rounds)
    return results, epochs, _LogTimed.seconds / (args.rounds * epochs * len(loader))


def bench_inference(kind: str, dataset: WindowDataset, weights: list[float], args) -> tuple[dict, int]:
    """Inference paths: their results and the passes a round."""
    def run(path: str, loader: DataLoader) -> tuple[float, float]:
        module = _module(kind, weights, args.seed)
        return (bare_predict if path == BARE_INFER else lightning_predict)(module, loader, args)

    one_pass = _passes_loader(dataset, args.batch_size, 1)
    run(BARE_INFER, one_pass)  # warm-up
    passes = max(1, round(args.seconds / run(LIGHTNING_INFER, one_pass)[0]))
    loader = _passes_loader(dataset, args.batch_size, passes)
    paths = {path: functools.partial(run, path, loader) for path in (BARE_INFER, LIGHTNING_INFER)}
    return _rounds(paths, passes * len(dataset), args.rounds), passes


def bench_model(kind: str, dm: FoldWindowDataModule, args) -> tuple[list[dict], dict]:
    """Rows of the table for one model, and its FLOPs and `self.log` figures."""
    weights = balanced_class_weights(torch.tensor(dm.samples["train"]["label"].to_numpy())).tolist()
    train_loader, dataset = dm.train_dataloader(), dm.datasets["train"]
    fwd, fwd_bwd = flops_per_sample(_module(kind, weights, seed=0), next(iter(train_loader)))
    train, epochs, log_s = bench_training(kind, train_loader, weights, args)
    infer, passes = bench_inference(kind, dataset, weights, args)

    rows = []
    for phase, results, flops, count in (("train", train, fwd_bwd, f"{epochs} ep"),
                                         ("infer", infer, fwd, f"{passes} pass")):
        for path, r in results.items():
            rows.append({"model": kind, "phase": phase, "path": path, **r, "gflops": r["rate"] * flops / 1e9,
                         "count": count})
    lightning = train[LIGHTNING_TRAIN]
    step_s = lightning["seconds"] / (args.rounds * epochs * len(train_loader))
    return rows, {"forward": fwd, "forward_backward": fwd_bwd, "log_ms": log_s * 1e3, "log_share": log_s / step_s}


# -- report -----------------------------------------------------------------------------------------
def print_table(rows: list[dict], matmul: float) -> None:
    print(f"{'model':<5} {'phase':<5} {'path':<26} {'samples/s':>9} {'spread':>6} {'vs bare':>7} {'GFLOP/s':>7} "
          f"{'vs matmul':>9} {'timed':>7} {'call s':>6}")
    for r in rows:
        call_s = f"{r['call_s']:.2f}" if r["path"].startswith("Lightning") else ""
        print(f"{r['model']:<5} {r['phase']:<5} {r['path']:<26} {r['rate']:>9,.0f} {r['spread']:>6.1%} "
              f"{r['ratio']:>6.2f}x {r['gflops']:>7.2f} {r['gflops'] / matmul:>9.1%} {r['count']:>7} {call_s:>6}")


def print_targets(rows: list[dict], matmul: float) -> None:
    print(f"targets: Lightning >= {LIGHTNING_TARGET}x the bare loop; TCN >= {TCN_MATMUL_TARGET:.0%} of the matmul")
    for r in rows:
        if r["path"] in (LIGHTNING_TRAIN, LIGHTNING_INFER):
            ok = r["ratio"] >= LIGHTNING_TARGET
            verdict = "met" if ok else f"MISSED by {LIGHTNING_TARGET - r['ratio']:.2f}"
            print(f"  {r['model']} {r['phase']}: {r['path']} at {r['ratio']:.2f}x the bare loop: {verdict}")
    for r in rows:
        if r["model"] == "tcn" and r["path"] != NO_METRICS_TRAIN:
            share = r["gflops"] / matmul
            verdict = "met" if share >= TCN_MATMUL_TARGET else "MISSED"
            print(f"  tcn {r['phase']}: {r['path']} at {share:.1%} of the matmul: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where one is available")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed run (whole epochs)")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of every path, interleaved")
    parser.add_argument("--fold", type=int, default=5)
    parser.add_argument("--data", default="sample", help="a conf/data config: sample (shipped) or full")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 2048 on a CPU, 4096 on a GPU")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device here, measuring on the CPU")
        args.device = "cpu"
    args.device = torch.device(args.device)
    n = args.matmul_size or (4096 if args.device.type == "cuda" else 2048)
    # Lightning's info lines and its hints about workers, logging interval and the skipped
    # validation loop are noise here, as is its own deprecation warning about torch's pytree.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=r".*(does not have many workers|smaller than the logging interval|no `val_dataloader`"
                          r"|isinstance\(treespec, LeafSpec\))"
    )

    groups = _groups(args.data)
    datamodules = {kind: _datamodule(kind, groups, args) for kind in MODELS}
    device_name = "cpu"
    if args.device.type == "cuda":  # PyTorch's defaults: convolutions may use TF32, matmuls may not
        device_name = (f"{torch.cuda.get_device_name(args.device)}; TF32 matmul "
                       f"{torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}")
    print(f"torch {torch.__version__}, lightning {L.__version__}; device {args.device} ({device_name}); "
          f"torch threads {torch.get_num_threads()}; batch {args.batch_size}; seed {args.seed}")
    print(f"data {args.data}, fold {args.fold}, train windows: "
          + ", ".join(f"{kind} {len(dm.datasets['train']):,}" for kind, dm in datamodules.items()))

    matmul_rates = matmul_gflops(args.device, n, args.rounds)
    rows, figures = [], {}
    for kind, dm in datamodules.items():
        model_rows, figures[kind] = bench_model(kind, dm, args)
        rows += model_rows
    matmul_rates += matmul_gflops(args.device, n, args.rounds)
    matmul = statistics.median(matmul_rates)

    print(f"float32 matmul {n}^3: {matmul:.1f} GFLOP/s (median of {len(matmul_rates)} runs, half before and half "
          f"after the models; range {min(matmul_rates):.1f}-{max(matmul_rates):.1f})")
    print("FLOPs per sample (FlopCounterMode): "
          + "; ".join(f"{kind} forward {f['forward'] / 1e6:.2f} M, forward+backward {f['forward_backward'] / 1e6:.2f} M"
                      for kind, f in figures.items()))
    print()
    print_table(rows, matmul)
    print(f"samples/s: median of {args.rounds} interleaved rounds; spread: (fastest - slowest round) / median; "
          "vs bare: median of the rounds' ratios to the bare loop's run of the same round; timed: epochs / passes a "
          "round; call s: a fit / predict call's time outside its epochs (set-up, tear-down)")
    print("Lightning fit, time inside the module's 6 self.log calls a step (garbage collection they trigger "
          "included): " + "; ".join(f"{kind} {f['log_ms']:.1f} ms a step, {f['log_share']:.1%} of the fit's time"
                                    for kind, f in figures.items()))
    print()
    print_targets(rows, matmul)


if __name__ == "__main__":
    main()
