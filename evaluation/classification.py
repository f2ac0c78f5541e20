"""The three-class signal's probability metrics (SPEC §8): AUC, F1, accuracy, log-loss, Brier, calibration,
confusion and the win rate of the directional calls, written to avoid the seed system's defects (§9).

Every scikit-learn call passes `y_true=` / `y_pred=` by keyword: the seed system swapped them, which swapped
BUY precision and recall. Classes are coded SELL = 0, HOLD = 1, BUY = 2 (`features.labels`). Every value
returned is a plain Python float / int / str / None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from evaluation.statistics import TARGET, plain_float
from features.labels import BUY, CLASS_NAMES, HOLD, SELL

LABELS = (SELL, HOLD, BUY)
PROBA_COLUMNS = ("p_sell", "p_hold", "p_buy")
CALIBRATION_BINS = 10
WIN_RATE_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def predicted_class(proba: np.ndarray) -> np.ndarray:
    """Argmax over (SELL, HOLD, BUY); an exact tie goes to the lower code (SELL before HOLD before BUY)."""
    return np.asarray(proba).argmax(axis=1)


def class_auc(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """One-vs-rest ROC AUC per class name; None where the class (or its complement) is absent from y_true."""
    out: dict[str, float | None] = {}
    for code, name in zip(LABELS, CLASS_NAMES, strict=True):
        positive = np.asarray(y_true) == code
        defined = 0 < positive.sum() < len(positive)
        out[name] = plain_float(roc_auc_score(y_true=positive, y_score=proba[:, code])) if defined else None
    return out


def macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in y_true or the predictions (sklearn's default set)."""
    return float(f1_score(y_true=y_true, y_pred=predicted_class(proba), average="macro", zero_division=0))


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(accuracy_score(y_true=y_true, y_pred=predicted_class(proba)))


def precision_recall(y_true: np.ndarray, proba: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Per-class precision (of the predicted class) and recall (of the true class); None where undefined.

    These are the numbers a y_true / y_pred swap exchanges (SPEC §9): precision of BUY divides by the rows
    PREDICTED BUY, recall of BUY by the rows that truly were BUY.
    """
    y_pred = predicted_class(proba)
    kwargs = {"labels": list(LABELS), "average": None, "zero_division": np.nan}
    precision = precision_score(y_true=y_true, y_pred=y_pred, **kwargs)
    recall = recall_score(y_true=y_true, y_pred=y_pred, **kwargs)
    return {
        "precision": {name: plain_float(value) for name, value in zip(CLASS_NAMES, precision, strict=True)},
        "recall": {name: plain_float(value) for name, value in zip(CLASS_NAMES, recall, strict=True)},
    }


def multiclass_log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log), over all three labels.

    Positional call on purpose: scikit-learn 1.9 renamed the keyword `y_pred` to `y_proba`, and a (n, 3)
    probability matrix cannot be mistaken for the label vector (a swap fails on shape).
    """
    return float(log_loss(y_true, proba, labels=list(LABELS)))


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of sum over classes of (p - one_hot)^2, in [0, 2]."""
    one_hot = np.eye(len(LABELS))[np.asarray(y_true)]
    return float(np.mean(np.sum((proba - one_hot) ** 2, axis=1)))


def confusion(y_true: np.ndarray, proba: np.ndarray) -> dict[str, list]:
    """Counts with rows = TRUE class, columns = PREDICTED class, both in the order SELL, HOLD, BUY."""
    matrix = confusion_matrix(y_true=y_true, y_pred=predicted_class(proba), labels=list(LABELS))
    return {"labels": list(CLASS_NAMES), "matrix": matrix.astype(int).tolist()}


def calibration_by_class(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> dict[str, dict[str, list]]:
    """Reliability curve per class (one-vs-rest), `n_bins` uniform bins on [0, 1], non-empty bins only.

    `calibration_curve` gives the observed fraction and the mean predicted probability; the row count per
    bin is recomputed with the same binning it uses (edges linspace(0, 1, n_bins + 1), a value on an inner
    edge goes to the lower bin), so the three lists align.
    """
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    out = {}
    for code, name in zip(LABELS, CLASS_NAMES, strict=True):
        prob = proba[:, code]
        observed, mean_predicted = calibration_curve(
            y_true=(np.asarray(y_true) == code).astype(int), y_prob=prob, n_bins=n_bins, strategy="uniform"
        )
        counts = np.bincount(np.searchsorted(inner_edges, prob), minlength=n_bins)
        out[name] = {
            "mean_predicted": [float(v) for v in mean_predicted],
            "observed": [float(v) for v in observed],
            "count": [int(v) for v in counts[counts > 0]],
        }
    return out


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, object]:
    """All probability/classification metrics for integer labels `y_true` and an (n, 3) `proba` matrix."""
    return {
        "auc": class_auc(y_true, proba),
        "macro_f1": macro_f1(y_true, proba),
        "accuracy": accuracy(y_true, proba),
        "log_loss": multiclass_log_loss(y_true, proba),
        "brier": brier_score(y_true, proba),
        **precision_recall(y_true, proba),
        "confusion_matrix": confusion(y_true, proba),
        "calibration": calibration_by_class(y_true, proba),
    }


# --- trading view -----------------------------------------------------------------------------------------------


def _bin_label(low: float, high: float) -> str:
    return f"{float(low)!r}-{float(high)!r}"


def win_rate_by_bin(frame: pd.DataFrame, bins: Sequence[float] = WIN_RATE_BINS) -> list[dict[str, object]]:
    """Win rate of the directional calls, binned by the probability of the called direction.

    A row is a call when its argmax class is BUY or SELL (HOLD rows are no trade); it falls in bin
    [low, high) by that class's probability (the last bin also holds its upper edge). Rows whose top
    probability is below the first edge (e.g. < 0.5: a plurality, not a majority) are outside every bin,
    as are rows without a forward return. A BUY wins when fwd_ret_3d > 0, a SELL when it is < 0; a zero
    return is a loss for both. `mean_fwd_ret` is the return signed in the trade's direction.
    """
    edges = np.asarray(bins, dtype=float)
    proba = frame.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float)
    called = predicted_class(proba)
    confidence = proba.max(axis=1)
    direction = np.select([called == BUY, called == SELL], [1.0, -1.0], default=0.0)
    signed = direction * frame[TARGET].to_numpy(dtype=float)
    position = np.searchsorted(edges, confidence, side="right") - 1
    position = np.where(confidence == edges[-1], len(edges) - 2, position)
    keep = (direction != 0) & np.isfinite(signed) & (position >= 0) & (position < len(edges) - 1)
    calls = pd.DataFrame({"bin": position[keep], "win": signed[keep] > 0, "ret": signed[keep]})
    stats = calls.groupby("bin").agg(count=("win", "size"), win_rate=("win", "mean"), mean_fwd_ret=("ret", "mean"))
    stats = stats.reindex(range(len(edges) - 1))
    return [
        {
            "bin": _bin_label(edges[i], edges[i + 1]),
            "count": int(np.nan_to_num(stats["count"].iat[i])),
            "win_rate": plain_float(stats["win_rate"].iat[i]),
            "mean_fwd_ret": plain_float(stats["mean_fwd_ret"].iat[i]),
        }
        for i in range(len(edges) - 1)
    ]


def row_values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Per-row value of a row-decomposable metric: log_loss, brier or accuracy (a hit: 1.0 or 0.0)."""
    proba = np.clip(rows.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=float), 0.0, 1.0)
    y_true = rows["label"].to_numpy(dtype=int)
    if metric == "log_loss":
        return -np.log(np.clip(proba[np.arange(len(y_true)), y_true], 1e-15, None))
    if metric == "brier":
        return np.sum((proba - np.eye(len(LABELS))[y_true]) ** 2, axis=1)
    return (predicted_class(proba) == y_true).astype(float)
