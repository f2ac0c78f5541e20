"""A cross-sectional training objective beside the 3-class cross-entropy (issue 33, item 2).

The class head is kept (the store and Trishula read its probabilities and the embedding); what it is
trained on can add a per-timestamp listwise ranking loss on its score s = logit(BUY) - logit(SELL):

- `softmax` (ListNet, top one): cross-entropy between the coins' softmax of s and the softmax of their
  forward returns' standardised ranks / temperature, per decision timestamp;
- `rank_corr`: minus the Pearson correlation between a soft rank of s (sum of sigmoids of pairwise
  differences / temperature) and the forward returns' ranks: a differentiable Spearman, per timestamp;
- `return_corr`: minus the Pearson correlation between the same soft rank of s and the forward returns
  themselves (winsorised at `clip` cross-sectional standard deviations, or not): a book whose weights are
  linear in the rank is paid the returns' magnitudes, not their order. Spearman pays for ordering the typical
  coin, and a rank-trained extractor learns the low-volatility factor (run 39); the ranked book is paid the
  mean of its extremes, which this loss sees;
- `book`: minus the soft quintile book's pay over the timestamp's return standard deviation: the mean forward
  return of the coins whose soft rank of s falls in the top k less that of the bottom k (k = max(1, floor(0.2 x
  coins)), as the ranked book picks its legs; each leg's edge soft over temperature x k ranks). Only the
  extremes count, each coin by its whole return, as the book is paid: a wild coin ranked at the bottom costs
  what it costs the short leg.

A batch is many timestamps (datamodules.samplers.DayBatchSampler keeps each whole); every function works
on the (B, B) mask of pairs that share a timestamp, with no loop over timestamps. Each timestamp with at
least two coins counts once, whatever its size. loss = (1 - w) * cross-entropy + w * listwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from datamodules.targets import TRAIN_TARGETS
from features.labels import BUY, SELL

LISTWISE = ("softmax", "rank_corr", "return_corr", "book")
BOOK_SHARE = 0.2  # each leg's share of the day's coins, as the ranked book's default quantile


def class_score(logits: torch.Tensor) -> torch.Tensor:
    """(B, 3) logits -> (B,) the ranking score the listwise loss trains: logit(BUY) - logit(SELL)."""
    return logits[:, BUY] - logits[:, SELL]


def pair_mask(group: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: i and j share a timestamp and both are valid; the diagonal always (a row is never empty)."""
    same = (group[:, None] == group[None, :]) & valid[:, None] & valid[None, :]
    return same | torch.eye(len(group), dtype=torch.bool, device=group.device)


def group_ranks(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) 1-based average ranks of `value` within each row's group of `mask` (ties share their mean rank)."""
    below = ((value[None, :] < value[:, None]) & mask).sum(1)  # (B,) members smaller than i
    equal = ((value[None, :] == value[:, None]) & mask).sum(1)  # (B,) members equal to i, i included
    return below + (equal + 1) / 2


def _masked_log_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) log of the softmax of x over each row's group: x_i - logsumexp_{j in group(i)} x_j."""
    spread = x[None, :].expand(len(x), -1).masked_fill(~mask, float("-inf"))  # (B, B)
    return x - torch.logsumexp(spread, dim=1)


def _per_group_mean(loss: torch.Tensor, size: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The mean over groups of the groups' sums of `loss`, from per-row values (each group's rows weigh 1 / size)."""
    if not keep.any():
        return loss.sum() * 0.0  # no timestamp with two coins: nothing to rank (keeps the graph)
    return loss[keep].sum() / (1.0 / size[keep]).sum()


def listwise_softmax_loss(score: torch.Tensor, ret: torch.Tensor, group: torch.Tensor,
                          temperature: float = 1.0) -> torch.Tensor:
    """ListNet: -sum_i q_i log p_i per timestamp, p = softmax(score), q = softmax(z(rank of ret) / temperature)."""
    mask = pair_mask(group, torch.isfinite(ret))
    size = mask.sum(1)  # (B,) coins in i's timestamp
    keep = torch.isfinite(ret) & (size >= 2)
    rank = group_ranks(ret, mask)
    z = (rank - (size + 1) / 2) / torch.sqrt(((size**2 - 1) / 12).clamp(min=1e-12))  # (B,) unit-variance ranks
    target = _masked_log_softmax(z / temperature, mask).exp()  # (B,) q_i
    return _per_group_mean(-target * _masked_log_softmax(score, mask), size, keep)


def _soft_ranks(score: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B,) 1-based soft ranks of `score` within each row's group (`weights`: the (B, B) pair mask as floats):
    0.5 plus the sum of sigmoids of its differences with the group's members / temperature (itself included)."""
    return 0.5 + (torch.sigmoid((score[:, None] - score[None, :]) / temperature) * weights).sum(1)


def _soft_rank_correlation(score: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, size: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """(B,) the Pearson correlation, in each row's group (`weights`: the (B, B) pair mask as floats, `size`: its
    row sums), of soft ranks of `score` with `target`."""
    soft_rank = _soft_ranks(score, weights, temperature)  # (B,)
    a = soft_rank - weights @ soft_rank / size  # (B,) centred within the timestamp
    b = target - weights @ target / size
    return (weights @ (a * b)) / torch.sqrt((weights @ a**2) * (weights @ b**2) + 1e-12)


def rank_correlation_loss(score: torch.Tensor, ret: torch.Tensor, group: torch.Tensor,
                          temperature: float = 0.1) -> torch.Tensor:
    """Minus the per-timestamp Pearson correlation of soft ranks of `score` with the ranks of `ret`."""
    mask = pair_mask(group, torch.isfinite(ret))
    weights = mask.float()  # (B, B)
    size = weights.sum(1)  # (B,) coins in i's timestamp
    keep = torch.isfinite(ret) & (size >= 2)
    corr = _soft_rank_correlation(score, group_ranks(ret, mask).float(), weights, size, temperature)
    return _per_group_mean(-corr / size, size, keep)


def _group_mean_sd(ret: torch.Tensor, weights: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) each row's group's mean and population standard deviation of `ret` (missing values already 0 and
    left out by `weights`, the (B, B) pair mask as floats; `size`: its row sums)."""
    mean = weights @ ret / size
    # Clamped before the root: a day of equal returns can round its variance below 0.
    return mean, torch.sqrt(((weights @ ret**2) / size - mean**2).clamp(min=0))


def winsorised(ret: torch.Tensor, weights: torch.Tensor, size: torch.Tensor, clip: float | None) -> torch.Tensor:
    """(B,) `ret` with missing values 0 and, when `clip` is set, limited to its group's mean +- clip standard
    deviations (population, over the group's valid members; `weights` and `size` as `_soft_rank_correlation`'s)."""
    ret = torch.nan_to_num(ret, nan=0.0)
    if clip is None:
        return ret
    mean, sd = _group_mean_sd(ret, weights, size)
    return torch.minimum(torch.maximum(ret, mean - clip * sd), mean + clip * sd)


def return_correlation_loss(score: torch.Tensor, ret: torch.Tensor, group: torch.Tensor,
                            temperature: float = 0.1, clip: float | None = None) -> torch.Tensor:
    """Minus the per-timestamp Pearson correlation of soft ranks of `score` with `ret` (winsorised at `clip`)."""
    valid = torch.isfinite(ret)
    weights = pair_mask(group, valid).float()  # (B, B)
    size = weights.sum(1)  # (B,)
    keep = valid & (size >= 2)
    corr = _soft_rank_correlation(score, winsorised(ret, weights, size, clip), weights, size, temperature)
    return _per_group_mean(-corr / size, size, keep)


def book_loss(score: torch.Tensor, ret: torch.Tensor, group: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Minus the per-timestamp soft quintile book's pay, the top k's mean `ret` less the bottom k's, over the
    timestamp's standard deviation of `ret` (k = max(1, floor(BOOK_SHARE x its coins)))."""
    valid = torch.isfinite(ret)
    weights = pair_mask(group, valid).float()  # (B, B)
    size = weights.sum(1)  # (B,)
    keep = valid & (size >= 2)
    ret = torch.nan_to_num(ret, nan=0.0)
    rank = _soft_ranks(score, weights, temperature)  # (B,) in [1, size]
    k = torch.floor(BOOK_SHARE * size).clamp(min=1)  # (B,) i's group's leg size
    edge = temperature * k  # ranks over which a leg's edge softens: hard as temperature -> 0
    top = torch.sigmoid((rank - (size - k + 0.5)) / edge) * keep  # (B,) membership of the long leg
    bottom = torch.sigmoid((k + 0.5 - rank) / edge) * keep  # (B,) of the short leg
    leg_weight = top / (weights @ top).clamp(min=1e-12) - bottom / (weights @ bottom).clamp(min=1e-12)  # (B,)
    sd = _group_mean_sd(ret, weights, size)[1] + 1e-12  # the day's
    return _per_group_mean(-leg_weight * ret / sd, size, keep)


@dataclass(frozen=True)
class Objective:
    """What a fit minimises: (1 - listwise_weight) * class cross-entropy + listwise_weight * `listwise` loss, where
    the class cross-entropy is the primary head's plus aux_weight times the aux heads' mean (with `aux_labels`).

    listwise_weight 0 is the cross-entropy alone (today's fits, bit for bit); 1 the listwise loss alone.
    `listwise`: one of LISTWISE (softmax, rank_corr, return_corr, book: the module's docstring says what each pays).
    `clip`: return_corr's winsorisation of each timestamp's returns, in its standard deviations (null: none).
    `day_batches`: train batches of whole timestamps (the datamodule reads it); a listwise loss needs them.
    `target`: what the listwise loss ranks the train windows by (the datamodule serves it): `return`, the forward
    return, or `scaled`, the forward return less its timestamp's mean over its coin's trailing residual volatility
    (datamodules.fold_windows), a target the wildest coins cannot dominate by their size alone, or
    `volatility_neutral`, the return's day rank less its fit on that volatility's rank (beyond the low-volatility
    factor).
    `aux_labels`: other label columns (other horizons) a head each learns beside the primary, their cross-entropies'
    mean added times `aux_weight` (the datamodule serves them with the train windows).
    """

    listwise: str = "softmax"
    listwise_weight: float = 0.0
    temperature: float = 1.0
    day_batches: bool = False
    clip: float | None = None
    target: str = "return"
    aux_labels: tuple[str, ...] = ()
    aux_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "aux_labels", tuple(self.aux_labels))  # Hydra hands a list
        if (self.aux_weight > 0) != bool(self.aux_labels) or self.aux_weight < 0:
            raise ValueError(f"objective.aux_labels need aux_weight > 0 and a positive aux_weight needs labels: {self}")
        if len(set(self.aux_labels)) != len(self.aux_labels):
            raise ValueError(f"objective.aux_labels names a label twice: {list(self.aux_labels)}")
        if self.listwise not in LISTWISE:
            raise ValueError(f"objective.listwise must be one of {LISTWISE}, got {self.listwise!r}")
        if not 0 <= self.listwise_weight <= 1 or self.temperature <= 0:
            raise ValueError(f"objective needs 0 <= listwise_weight <= 1 and temperature > 0: {self}")
        if self.clip is not None and (self.listwise != "return_corr" or self.clip <= 0):
            raise ValueError(f"objective.clip winsorises return_corr's returns and must be > 0: {self}")
        if self.target not in TRAIN_TARGETS or (self.target != "return" and not self.ranks):
            raise ValueError(f"objective.target must be one of {TRAIN_TARGETS}, and any but 'return' is what a "
                             f"listwise loss (listwise_weight > 0) ranks: {self}")
        if self.listwise_weight > 0 and not self.day_batches:
            raise ValueError("a listwise loss ranks each timestamp's coins: it needs objective.day_batches=true")

    @property
    def ranks(self) -> bool:
        return self.listwise_weight > 0

    def ranking_loss(self, logits: torch.Tensor, ret: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        score, ret = class_score(logits.float()), ret.float()
        if self.listwise == "return_corr":
            return return_correlation_loss(score, ret, group, self.temperature, self.clip)
        if self.listwise == "book":
            return book_loss(score, ret, group, self.temperature)
        loss = listwise_softmax_loss if self.listwise == "softmax" else rank_correlation_loss
        return loss(score, ret, group, self.temperature)

    def with_aux(self, cross_entropy: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """The primary cross-entropy plus aux_weight times the other horizons' heads' mean cross-entropy."""
        return cross_entropy + self.aux_weight * aux

    def combine(self, cross_entropy: torch.Tensor, ranking: torch.Tensor) -> torch.Tensor:
        if self.listwise_weight == 1:
            return ranking
        return (1 - self.listwise_weight) * cross_entropy + self.listwise_weight * ranking
