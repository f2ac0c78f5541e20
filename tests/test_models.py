"""Extractor nets and their LightningModule: sizes, shapes, causality and the training wiring."""

import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from models import ExtractorModule, ExtractorOutput, LSTMExtractor, TCNExtractor, balanced_class_weights


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
