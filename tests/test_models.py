"""Extractor nets and their LightningModule: sizes, shapes, causality and the training wiring."""

import math
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from models import ExtractorModule, ExtractorOutput, LSTMExtractor, TCNExtractor, balanced_class_weights
from models.ensemble import SeedEnsemble, member_state
from models.objectives import (
    Objective,
    book_loss,
    class_score,
    group_ranks,
    listwise_softmax_loss,
    pair_mask,
    rank_correlation_loss,
    return_correlation_loss,
    winsorised,
)
from models.rank_ic import DailyRankIC
from models.schedules import WarmupDecay


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_lstm_parameter_count():
    # nn.LSTM layer: 4 gates * (h * (in + h) + 2h), two bias vectors per gate.
    layer1 = 4 * (64 * (12 + 64) + 2 * 64)  # 19,968
    layer2 = 4 * (64 * (64 + 64) + 2 * 64)  # 33,280
    heads = (64 * 12 + 12) + (12 * 3 + 3)  # embedding 780 + class head on the embedding 39
    count = n_params(LSTMExtractor())
    assert count == layer1 + layer2 + heads == 54_067
    assert 45_000 <= count <= 55_000


def test_tcn_parameter_count():
    # Convs before BatchNorm have no bias; BN has weight + bias per channel; the 1x1 shortcut
    # W_s exists only in block 1 (6 -> 64 channels).
    block1 = 6 * 64 * 3 + 2 * 64 + 64 * 64 * 3 + 2 * 64 + 6 * 64  # 14,080
    block = 2 * (64 * 64 * 3 + 2 * 64)  # 24,832, blocks 2-4
    heads = (64 * 16 + 16) + (16 * 3 + 3)  # embedding 1,040 + class head on the embedding 51
    count = n_params(TCNExtractor())
    assert count == block1 + 3 * block + heads == 89_667


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize(
    ("net_cls", "shape", "emb_dim"), [(LSTMExtractor, (30, 12), 12), (TCNExtractor, (6, 168), 16)]
)
def test_output_shapes(net_cls, shape, emb_dim, batch):
    net = net_cls().eval()
    out = net(torch.randn(batch, *shape))
    assert isinstance(out, ExtractorOutput)
    assert out.embedding.shape == (batch, emb_dim)
    assert out.logits.shape == (batch, 3)


@pytest.mark.parametrize(("net_cls", "shape"), [(LSTMExtractor, (30, 12)), (TCNExtractor, (6, 168))])
def test_the_class_loss_trains_every_embedding_dimension(net_cls, shape):
    # SPEC §4: the embedding is learned. The class head reads it through a nonlinearity, so the
    # gradient reaching the embedding head spans more than the 3 directions a linear map to the
    # logits would read (rank <= 3 there: the rest of the embedding would stay a random projection).
    net = net_cls().eval()
    F.cross_entropy(net(torch.randn(64, *shape)).logits, torch.randint(0, 3, (64,))).backward()
    grad = net.embedding_head.weight.grad  # (embedding_dim, hidden)
    assert (grad.abs().sum(dim=1) > 0).all()
    assert torch.linalg.matrix_rank(grad) > 3
    assert all(p.requires_grad for p in net.parameters())


def test_tcn_step_features_shape():
    assert TCNExtractor().eval().step_features(torch.randn(2, 6, 168)).shape == (2, 64, 168)


def test_tcn_is_causal_in_eval_mode():
    # Eval mode: train-mode BatchNorm normalises with statistics over all steps, future included.
    net = TCNExtractor().eval()
    x = torch.randn(2, 6, 168)
    t = 100
    future = x.clone()
    future[..., t + 1 :] = torch.randn(2, 6, 168 - t - 1)
    with torch.no_grad():
        before, after = net.step_features(x), net.step_features(future)
    assert torch.equal(before[..., : t + 1], after[..., : t + 1])
    assert not torch.equal(before[..., t + 1], after[..., t + 1])


def test_tcn_receptive_field_is_61_steps():
    # 4 blocks * 2 convs, each reaching (3 - 1) * d back: 1 + 4 * (1 + 2 + 4 + 8) = 61 steps.
    net = TCNExtractor().eval()
    x = torch.randn(1, 6, 168)

    @torch.no_grad()
    def last_step_after_moving(lag: int) -> torch.Tensor:
        moved = x.clone()
        moved[..., -1 - lag] += 10.0
        return net.step_features(moved)[..., -1]

    with torch.no_grad():
        base = net.step_features(x)[..., -1]
    assert not torch.equal(last_step_after_moving(60), base)
    assert torch.equal(last_step_after_moving(61), base)


def test_lstm_reads_the_last_step():
    net = LSTMExtractor().eval()
    x = torch.randn(3, 30, 12)
    moved = x.clone()
    moved[:, -1] = torch.randn(3, 12)
    with torch.no_grad():
        out, out_moved = net(x), net(moved)
    assert not torch.equal(out.embedding, out_moved.embedding)
    assert not torch.equal(out.logits, out_moved.logits)
    # Two separate heads: a 12-d embedding and 3 class logits.
    assert out.embedding.shape[-1] == 12 and out.logits.shape[-1] == 3


def test_balanced_class_weights_hand_computed():
    labels = torch.tensor([1, 1, 1, 1, 0, 2])  # counts 1, 4, 1; n = 6
    expected = torch.tensor([6 / (3 * 1), 6 / (3 * 4), 6 / (3 * 1)])  # 2, 0.5, 2
    assert torch.allclose(balanced_class_weights(labels), expected)


def test_balanced_class_weights_rejects_a_missing_class():
    with pytest.raises(ValueError, match="no training labels"):
        balanced_class_weights(torch.tensor([1, 1, 2]))


def module(net=None, **kwargs) -> ExtractorModule:
    return ExtractorModule(net or LSTMExtractor(), optimizer=partial(torch.optim.AdamW, lr=1e-2), **kwargs)


def test_class_weights_give_the_hand_computed_weighted_cross_entropy():
    # Row 1: softmax(0, 0, ln 2) = (1/4, 1/4, 1/2), label BUY  -> nll = ln 2.
    # Row 2: softmax(ln 3, 0, 0) = (3/5, 1/5, 1/5), label SELL -> nll = ln(5/3).
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [math.log(3), 0.0, 0.0]])
    y = torch.tensor([2, 0])
    weights = [0.5, 1.0, 2.0]
    weighted = (2.0 * math.log(2) + 0.5 * math.log(5 / 3)) / (2.0 + 0.5)
    unweighted = (math.log(2) + math.log(5 / 3)) / 2
    assert module(class_weights=weights).loss(logits, y).item() == pytest.approx(weighted, rel=1e-6)
    assert module().loss(logits, y).item() == pytest.approx(unweighted, rel=1e-6)
    assert weighted != pytest.approx(unweighted)


def test_predict_step_returns_the_raw_net_output():
    net = TCNExtractor()
    lit = module(net).eval()
    x = torch.randn(4, 6, 168)
    with torch.no_grad():
        expected = net(x)
        for batch in (x, [x], (x, torch.zeros(4, dtype=torch.long))):
            out = lit.predict_step(batch, 0)
            assert torch.equal(out.logits, expected.logits)
            assert torch.equal(out.embedding, expected.embedding)


def synthetic_dataset(n: int) -> TensorDataset:
    # Labels are a fixed function of the last step's first feature: a learnable mapping that
    # checks the optimisation wiring only, not anything about markets.
    x = torch.randn(n, 30, 12)
    s = x[:, -1, 0]
    y = torch.where(s < -0.5, 0, torch.where(s > 0.5, 2, 1))
    return TensorDataset(x, y)


def mean_loss(lit: ExtractorModule, data: TensorDataset) -> float:
    x, y = data.tensors
    lit.eval()
    with torch.no_grad():
        loss = F.cross_entropy(lit(x).logits, y).item()
    lit.train()
    return loss


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_trainer_fit_drives_the_loss_down():
    train, val = synthetic_dataset(128), synthetic_dataset(64)
    lit = module(
        class_weights=balanced_class_weights(train.tensors[1]),
        scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min", patience=2),
    )
    initial = mean_loss(lit, train)
    trainer = L.Trainer(
        max_epochs=10,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(lit, DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=64))
    assert mean_loss(lit, train) < 0.5 * initial
    logged = trainer.callback_metrics
    for key in ("train/loss", "val/loss", "val/acc", "val/f1_macro", "val/auroc_sell", "val/auroc_hold",
                "val/auroc_buy", "train/auroc_buy"):
        assert key in logged


@pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*no `val_dataloader`")
def test_checkpoint_loads_with_weights_only_and_resumes(tmp_path):
    # torch.load defaults to weights_only=True, which refuses pickled callables in the hparams.
    data = DataLoader(synthetic_dataset(16), batch_size=8)
    kwargs = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    schedule = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=4)
    lit = module(class_weights=[1.0, 0.5, 1.0], scheduler=schedule)
    trainer = L.Trainer(max_epochs=1, **kwargs)
    trainer.fit(lit, data)
    path = tmp_path / "extractor.ckpt"
    trainer.save_checkpoint(path)

    assert torch.load(path, weights_only=True)["hyper_parameters"]["class_weights"] == [1.0, 0.5, 1.0]
    loaded = ExtractorModule.load_from_checkpoint(
        path, net=LSTMExtractor(), optimizer=partial(torch.optim.AdamW, lr=1e-2)
    )
    assert torch.equal(loaded.class_weights, lit.class_weights)
    for name, value in lit.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    L.Trainer(max_epochs=2, **kwargs).fit(module(scheduler=schedule), data, ckpt_path=path)


# -- training recipe (issue 33): objectives, the validation IC, schedules, ensembles -----------------------------


def _groups_of(sizes):
    return torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])


def test_group_ranks_are_average_ranks_within_each_timestamp():
    value = torch.tensor([3.0, 1.0, 3.0, 2.0, 5.0, 4.0, float("nan")])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    mask = pair_mask(group, torch.isfinite(value))
    ranks = group_ranks(value, mask)
    # Group 0: 1 < 2 < 3 = 3 -> ranks 1, 2, 3.5, 3.5; group 1 (the NaN left out): 4 < 5 -> 1, 2.
    assert ranks[:6].tolist() == [3.5, 1.0, 3.5, 2.0, 2.0, 1.0]


def test_listwise_softmax_loss_is_the_mean_over_timestamps_of_listnet():
    torch.manual_seed(1)
    sizes = [5, 3, 1, 4]  # the single coin's timestamp has nothing to rank: it does not count
    group = _groups_of(sizes)
    score, ret = torch.randn(len(group)), torch.randn(len(group))
    expected = []
    for g, n in enumerate(sizes):
        if n < 2:
            continue
        s, r = score[group == g], ret[group == g]
        rank = torch.argsort(torch.argsort(r)).double() + 1  # no ties
        z = (rank - (n + 1) / 2) / math.sqrt((n * n - 1) / 12)
        expected.append(float(-(torch.softmax(z / 0.5, 0) * torch.log_softmax(s.double(), 0)).sum()))
    got = listwise_softmax_loss(score, ret, group, temperature=0.5)
    assert float(got) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    # Ranked the way the returns rank, the loss is lower than ranked against them.
    assert float(listwise_softmax_loss(ret * 5, ret, group)) < float(listwise_softmax_loss(-ret * 5, ret, group))


def test_rank_correlation_loss_is_minus_spearman_at_a_small_temperature():
    from scipy.stats import spearmanr

    torch.manual_seed(2)
    sizes = [6, 4, 7]
    group = _groups_of(sizes)
    score, ret = torch.randn(len(group)), torch.randn(len(group))
    spearman = [spearmanr(score[group == g].numpy(), ret[group == g].numpy()).statistic for g in range(3)]
    got = rank_correlation_loss(score, ret, group, temperature=1e-4)
    assert float(got) == pytest.approx(-np.mean(spearman), abs=1e-4)
    # A differentiable rank: the gradient reaches every score.
    score.requires_grad_(True)
    rank_correlation_loss(score, ret, group, temperature=0.5).backward()
    assert (score.grad.abs() > 0).all()


def test_return_correlation_loss_pays_the_returns_magnitude_where_spearman_pays_their_order():
    torch.manual_seed(3)
    sizes = [6, 5, 1]  # the lone coin's timestamp does not count; the NaN return is left out of its timestamp
    group = _groups_of(sizes)
    score, ret = torch.randn(len(group)), torch.randn(len(group))
    ret[7] = float("nan")
    expected = []
    for g in range(2):
        member = (group == g) & torch.isfinite(ret)
        rank = torch.argsort(torch.argsort(score[member])).double()  # the hard rank of the score
        expected.append(float(np.corrcoef(rank.numpy(), ret[member].double().numpy())[0, 1]))
    got = return_correlation_loss(score, ret, group, temperature=1e-4)
    assert float(got) == pytest.approx(-np.mean(expected), abs=1e-4)
    # One coin explodes: ranked lowest, Spearman barely minds and the returns' correlation does.
    ret = torch.tensor([0.01, 0.02, 0.03, 0.04, 0.05, 2.0])
    score = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 0.0])
    group = torch.zeros(6, dtype=torch.long)
    spearman = 1 - 6 * 30 / 210  # rank differences 1, 1, 1, 1, 1, -5: rho = +1/7
    assert float(rank_correlation_loss(score, ret, group, 1e-4)) == pytest.approx(-spearman, abs=1e-4)
    assert float(return_correlation_loss(score, ret, group, 1e-4)) > 0.5  # a loss: correlation < -0.5
    # Winsorised at 1 standard deviation the explosion weighs less and the order more.
    clipped = return_correlation_loss(score, ret, group, 1e-4, clip=1.0)
    assert float(clipped) < float(return_correlation_loss(score, ret, group, 1e-4))
    score.requires_grad_(True)
    return_correlation_loss(score, ret, group, 0.5, clip=2.0).backward()
    assert (score.grad.abs() > 0).all()


def test_book_loss_is_minus_the_quintile_books_pay_over_the_days_spread_at_a_small_temperature():
    import pandas as pd

    from evaluation.statistics import daily_quintile_spread

    torch.manual_seed(5)
    sizes = [11, 5, 1, 7]  # legs of 2, 1 and 1 coins; the lone coin's timestamp does not count
    group = _groups_of(sizes)
    score, ret = torch.randn(len(group)), torch.randn(len(group))
    ret[3] = float("nan")  # left out of its timestamp: 10 coins, legs of 2
    frame = pd.DataFrame({"date": group.numpy(), "score": score.numpy(), "target": ret.double().numpy()})
    spread = daily_quintile_spread(frame, target="target")  # the book's legs, picked as it picks them
    sd = frame.dropna().groupby("date")["target"].std(ddof=0)
    expected = -(spread / sd[spread.index]).mean()
    assert list(spread.index) == [0, 1, 3]
    assert float(book_loss(score, ret, group, temperature=1e-4)) == pytest.approx(expected, abs=1e-4)
    # One coin explodes: ranked lowest it costs the short leg its whole return; Spearman barely minds.
    ret = torch.tensor([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 2.0])
    score = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0])
    group = torch.zeros(10, dtype=torch.long)
    assert float(rank_correlation_loss(score, ret, group, 1e-4)) < -0.2  # a good order: Spearman +0.45
    assert float(book_loss(score, ret, group, 1e-4)) > 1.0  # the book pays (0.085 - 1.005) / 0.59 < -1
    assert float(book_loss(-score, ret, group, 1e-4)) < -1.0  # the explosion in the long leg
    logits = torch.stack([-score / 2, torch.zeros(10), score / 2], 1)  # logit(BUY) - logit(SELL) = score
    objective = Objective(listwise="book", listwise_weight=0.5, day_batches=True)
    assert float(objective.ranking_loss(logits, ret, group)) == pytest.approx(float(book_loss(score, ret, group, 1.0)))
    score.requires_grad_(True)
    book_loss(score, ret, group, 0.5).backward()
    assert (score.grad.abs() > 0).all()


def test_winsorised_returns_stay_within_their_timestamps_mean_and_clip_standard_deviations():
    ret = torch.tensor([0.0, 1.0, 2.0, 30.0, -1.0, 1.0, float("nan")])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    weights = pair_mask(group, torch.isfinite(ret)).float()
    got = winsorised(ret, weights, weights.sum(1), clip=1.0)
    first = ret[:4].double()
    mean, sd = float(first.mean()), float(first.std(unbiased=False))
    assert got[:4].tolist() == pytest.approx([max(v, mean - sd) if v < mean + sd else mean + sd
                                              for v in first.tolist()], rel=1e-5)
    assert got[4:].tolist() == pytest.approx([-1.0, 1.0, 0.0])  # within 1 sd of 0; the NaN is 0, left out
    assert torch.equal(winsorised(ret, weights, weights.sum(1), None)[:6], ret[:6])
    # A day of equal returns (its variance can round below 0) stays where it is (its mean), never NaN.
    flat = torch.full((7,), 0.1)
    weights = pair_mask(torch.zeros(7, dtype=torch.long), torch.isfinite(flat)).float()
    assert winsorised(flat, weights, weights.sum(1), clip=3.0).tolist() == pytest.approx(flat.tolist())
    with pytest.raises(ValueError, match="clip"):
        Objective(listwise="rank_corr", clip=3.0)


def test_the_listwise_objective_needs_whole_timestamps_and_mixes_by_its_weight():
    with pytest.raises(ValueError, match="day_batches"):
        Objective(listwise_weight=0.5)
    objective = Objective(listwise_weight=0.25, day_batches=True)
    assert float(objective.combine(torch.tensor(2.0), torch.tensor(6.0))) == pytest.approx(0.75 * 2 + 0.25 * 6)
    logits = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.5]])
    assert class_score(logits).tolist() == [1.0, -1.5]  # logit(BUY) - logit(SELL)


def test_soft_targets_give_the_weighted_cross_entropy_when_one_hot_and_mix_otherwise():
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    weighted = module(class_weights=[0.5, 1.0, 2.0])
    one_hot = F.one_hot(y, 3).float()
    assert float(weighted.loss(logits, one_hot)) == pytest.approx(float(weighted.loss(logits, y)), rel=1e-6)
    # Half-and-half targets: the weighted mean of the two classes' losses.
    y2 = torch.tensor([1, 1, 0, 2, 0, 2])
    soft = 0.5 * one_hot + 0.5 * F.one_hot(y2, 3).float()
    nll = -logits.log_softmax(-1)
    w = torch.tensor([0.5, 1.0, 2.0])
    rows = torch.arange(6)
    expected = (0.5 * w[y] * nll[rows, y] + 0.5 * w[y2] * nll[rows, y2]).sum() / (0.5 * w[y] + 0.5 * w[y2]).sum()
    assert float(weighted.loss(logits, soft)) == pytest.approx(float(expected), rel=1e-6)


def test_the_daily_rank_ic_metric_is_the_evaluations_daily_rank_ic():
    import pandas as pd

    from evaluation import daily_rank_ic

    rng = np.random.default_rng(3)
    n = 200
    group = rng.integers(0, 12, n)
    score = rng.integers(0, 5, n).astype(float)  # ties
    ret = rng.normal(size=n)
    ret[::17] = np.nan
    keep = (group != 11) | (np.arange(n) < 5)  # one timestamp with only a few coins, some without a return
    group, score, ret = group[keep], score[keep], ret[keep]
    expected = daily_rank_ic(pd.DataFrame({"date": group, "score": score, "fwd_ret_3d": ret}))
    metric = DailyRankIC()
    for part in np.array_split(np.arange(len(group)), 3):  # batches
        metric.update(torch.tensor(score[part]), torch.tensor(ret[part]), torch.tensor(group[part]))
    assert float(metric.compute()) == pytest.approx(float(expected.mean()), abs=1e-6)


def test_warmup_decay_warms_up_then_decays_to_its_floor():
    cosine, linear = WarmupDecay(warmup=0.1, decay="cosine", min_ratio=0.1), WarmupDecay(warmup=0.1, decay="linear")
    total = 101
    factors = [cosine.factor(s, total) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0) and factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # decays, never rises
    assert factors[-1] == pytest.approx(0.1)
    assert cosine.factor(55, total) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert linear.factor(55, total) == pytest.approx(0.5) and linear.factor(100, total) == pytest.approx(0.0)


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_a_step_schedule_sets_every_steps_learning_rate_in_a_fit():
    from lightning.pytorch.callbacks import Callback

    class Rates(Callback):
        def __init__(self):
            self.lrs = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    schedule = WarmupDecay(warmup=0.25, decay="linear")
    lit = module(scheduler=schedule)
    rates = Rates()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[rates])
    trainer.fit(lit, DataLoader(synthetic_dataset(32), batch_size=4))  # 8 steps an epoch, 16 in all
    assert rates.lrs == pytest.approx([1e-2 * schedule.factor(step, 16) for step in range(16)])


@pytest.mark.filterwarnings("ignore:.*self.trainer.*reference is not registered")
def test_a_listwise_objective_alone_learns_to_rank_what_the_classes_do_not_say():
    """Classes are noise, the forward return is the last step's first feature: only the ranking loss can learn it."""
    from datamodules.windows import WindowBatch

    torch.manual_seed(4)
    n, coins = 512, 8
    x = torch.randn(n, 30, 12)
    ret = x[:, -1, 0] + 0.1 * torch.randn(n)
    group = torch.arange(n) // coins
    y = torch.randint(0, 3, (n,))
    batches = [WindowBatch(x[i:i + 64], y[i:i + 64], ret[i:i + 64], group[i:i + 64]) for i in range(0, n, 64)]
    lit = module(LSTMExtractor(dropout=0.0), objective=Objective(listwise_weight=1.0, day_batches=True))
    metric = DailyRankIC()

    def ic() -> float:
        metric.reset()
        with torch.no_grad():
            metric.update(class_score(lit.net.eval()(x).logits), ret, group)
        lit.net.train()
        return float(metric.compute())

    before = ic()
    optimizer = lit.configure_optimizers()
    for _ in range(6):
        for batch in batches:
            optimizer.zero_grad()
            lit.training_step(batch, 0).backward()
            optimizer.step()
    assert ic() > max(0.5, before + 0.4), (before, ic())


def test_a_seed_ensemble_serves_the_mean_of_its_members():
    members = [TCNExtractor(), TCNExtractor()]
    config = {"_target_": "models.TCNExtractor", "in_channels": 6}
    ensemble = SeedEnsemble(config, 2, nets=members).eval()
    x = torch.randn(3, 6, 168)
    with torch.no_grad():
        out, a, b = ensemble(x), members[0].eval()(x), members[1].eval()(x)
    torch.testing.assert_close(out.embedding, (a.embedding + b.embedding) / 2)
    # The store softmaxes the logits it reads: that gives the members' mean probability.
    torch.testing.assert_close(out.logits.softmax(-1), (a.logits.softmax(-1) + b.logits.softmax(-1)) / 2)
    assert ensemble.embedding_head.out_features == 16
    # Saved and rebuilt from its config, as the backfill does; each member's weights come back out.
    rebuilt = SeedEnsemble(config, 2)
    rebuilt.load_state_dict(ensemble.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x).logits, out.logits)
    second = member_state(ensemble.state_dict(), 1)
    assert all(torch.equal(second[k], v) for k, v in members[1].state_dict().items())
    single = members[0].state_dict()
    assert member_state(single, 1) is single  # a single net's weights start every member


def test_heads_for_other_horizons_add_their_weighted_cross_entropy_and_train_the_embedding():
    """loss = primary cross-entropy + aux_weight x the heads' mean class-weighted cross-entropy, unknown classes not
    counted; the heads read the embedding (through the bottleneck) and live in the module, not the network."""
    from datamodules.windows import IGNORE, WindowBatch
    from models.outputs import bottleneck

    with pytest.raises(ValueError, match="aux_weight"):
        Objective(aux_labels=["label_1d"])
    with pytest.raises(ValueError, match="aux_weight"):
        Objective(aux_weight=0.5)
    with pytest.raises(ValueError, match="twice"):
        Objective(aux_labels=["label_1d", "label_1d"], aux_weight=0.5)
    with pytest.raises(ValueError, match="scaled"):
        Objective(target="scaled")  # a scaled ranking target without a listwise loss would be read by nothing
    assert Objective(listwise="rank_corr", listwise_weight=0.5, day_batches=True, target="scaled").ranks
    torch.manual_seed(0)
    aux_w = [[1.0, 0.5, 2.0], [0.8, 1.0, 1.5]]
    lit = module(LSTMExtractor(dropout=0.0), class_weights=[0.5, 1.0, 2.0], aux_class_weights=aux_w,
                 objective=Objective(aux_labels=("label_1d", "label_7d"), aux_weight=0.5))
    assert len(lit.aux_heads) == 2 and set(lit.net.state_dict()) == set(LSTMExtractor().state_dict())
    with pytest.raises(ValueError, match="2 x 3"):
        module(LSTMExtractor(), aux_class_weights=[[1.0, 1.0, 1.0]],
               objective=Objective(aux_labels=("label_1d", "label_7d"), aux_weight=0.5))
    x, y = torch.randn(8, 30, 12), torch.tensor([0, 1, 2, 2, 1, 0, 1, 2])
    aux = torch.tensor([[0, 2], [1, IGNORE], [2, 0], [IGNORE, IGNORE], [1, 1], [0, 2], [2, IGNORE], [1, 0]])
    batch = WindowBatch(x, y, torch.randn(8), torch.zeros(8, dtype=torch.long), aux=aux)
    out = lit.net(x)
    features = bottleneck(out.embedding)
    expected_aux = []
    for k in range(2):
        known = aux[:, k] != IGNORE
        expected_aux.append(F.cross_entropy(lit.aux_heads[k](features[known]), aux[known, k],
                                            weight=torch.tensor(aux_w[k])))
    expected = lit.loss(out.logits, y) + 0.5 * torch.stack(expected_aux).mean()
    loss = lit.training_step(batch, 0)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    # The aux heads' loss reaches the embedding: the LSTM's weights get a gradient from it alone.
    lit.zero_grad()
    lit.aux_loss(lit.net(x).embedding, aux).backward()
    assert lit.net.lstm.weight_hh_l0.grad.abs().sum() > 0 and lit.net.class_head.weight.grad is None
    # A batch with no known class of a label adds 0 for that head (and stays finite).
    none_known = torch.full((8, 2), IGNORE)
    none_known[:, 0] = 1
    value = lit.aux_loss(lit.net(x).embedding, none_known).detach()
    assert torch.isfinite(value) and float(value) == pytest.approx(
        float(F.cross_entropy(lit.aux_heads[0](bottleneck(lit.net(x).embedding)), none_known[:, 0],
                              weight=torch.tensor(aux_w[0])).detach()) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="aux_labels"):
        lit.training_step((x, y), 0)
