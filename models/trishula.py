"""Trishula: the LightGBM meta-learner that stacks tabular features with the extractors' outputs.

scikit-learn conventions: `fit` returns self, fitted attributes end in `_`. The model is a
multiclass LightGBM (SELL = 0, HOLD = 1, BUY = 2) early-stopped on validation multi_logloss.

Raw scores (margins) are what the booster gives and what is stored; probabilities are their
softmax, taken exactly once, here in `predict_proba`, never by LightGBM and again by us.

At inference every feature the model was trained on must be present, by name, and computed the
same way (the schema hash of the feature definitions must match): a missing or renamed column is
an error naming it, never a zero-fill. Extra columns are ignored.

Backends: `local` trains in process; `dask` trains the same model over a Dask cluster through
LightGBM's Dask interface (`lightgbm.DaskLGBMClassifier`, one partition per worker) and keeps the
local booster it returns, so prediction and saving do not depend on the cluster. That interface
does not support early stopping (workers stop at different rounds and the network breaks:
lightgbm#4189), so the cluster trains all `n_estimators` rounds and the best iteration is chosen
afterwards on the validation rows by the same rule: the last best multi_logloss before
`early_stopping_rounds` rounds without improvement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import special

N_CLASSES = 3


class MissingFeatureError(KeyError):
    """A feature the model was trained on is absent from the inference frame."""


class FeatureSchemaError(ValueError):
    """The inference features are not computed the way the training features were."""


def softmax(margins: np.ndarray) -> np.ndarray:
    """Row-wise softmax of raw multiclass scores, (n, 3) -> (n, 3)."""
    return special.softmax(margins, axis=1)


def check_features(frame: pd.DataFrame, features: Sequence[str]) -> None:
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise MissingFeatureError(
            f"the inference frame lacks {len(missing)} feature(s) the model was trained on: {missing[:10]}"
            + (" ..." if len(missing) > 10 else "")
            + "; features are never zero-filled"
        )


def staged_log_loss(booster: lgb.Booster, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """multi_logloss of the first k trees for k = 1 .. all: (iterations,).

    The margin after k rounds is the sum of the first k rounds' tree outputs; one pass per round.
    """
    rounds = booster.current_iteration()
    margins = np.zeros((len(X), N_CLASSES))
    losses = np.empty(rounds)
    rows = np.arange(len(X))
    for k in range(rounds):  # a loop over boosting rounds (<= n_estimators), not rows
        margins += booster.predict(X, start_iteration=k, num_iteration=1, raw_score=True).reshape(len(X), N_CLASSES)
        proba = softmax(margins)
        losses[k] = -np.mean(np.log(np.clip(proba[rows, y], 1e-15, None)))
    return losses


def early_stopping_iteration(losses: np.ndarray, patience: int) -> int:
    """The 1-based iteration LightGBM's early stopping would keep for this validation curve."""
    best = 0
    for k in range(1, len(losses)):
        if k - best > patience:
            break
        if losses[k] < losses[best]:
            best = k
    return best + 1


class TrishulaClassifier:
    """LightGBM multiclass meta-learner.

    params: LightGBM parameters in the scikit-learn API's names (n_estimators, learning_rate,
    num_leaves, ...). early_stopping_rounds: rounds without a better validation multi_logloss; None
    trains all n_estimators rounds (the validation rows are then only scored, never chosen on).
    feature_schema_hash: a hash of how the features are computed, checked again at inference.
    additive_features: columns that enter additively: each may share a tree with no other column
    (LightGBM's interaction_constraints), while the rest interact freely among themselves.
    """

    val_metric = "multi_logloss"  # the validation metric of best_score_

    def __init__(
        self,
        params: Mapping,
        early_stopping_rounds: int | None = 50,
        backend: str = "local",
        dask_client=None,
        feature_schema_hash: str | None = None,
        additive_features: Sequence[str] = (),
    ):
        if backend not in ("local", "dask"):
            raise ValueError(f"stack.backend must be 'local' or 'dask', got {backend!r}")
        if backend == "dask" and dask_client is None:
            raise ValueError("the dask backend needs a dask.distributed Client")
        self.params = dict(params)
        self.early_stopping_rounds = early_stopping_rounds
        self.backend = backend
        self.dask_client = dask_client
        self.feature_schema_hash = feature_schema_hash
        self.additive_features = tuple(additive_features)

    def _interaction_constraints(self, features: list[str]) -> dict:
        """LightGBM's interaction_constraints for `additive_features`: one group of all the other columns, and a
        group of its own for each additive column. Every column is named in a group."""
        if not self.additive_features:
            return {}
        unknown = sorted(set(self.additive_features) - set(features))
        if unknown:
            raise ValueError(f"additive_features {unknown} are not among the model's features")
        additive = set(self.additive_features)
        shared = [i for i, name in enumerate(features) if name not in additive]
        return {"interaction_constraints": [shared, *([i] for i, name in enumerate(features) if name in additive)]}

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray
    ) -> TrishulaClassifier:
        """Train on (X, y), early-stop on (X_val, y_val) unless early_stopping_rounds is None; X's columns are the
        feature list."""
        features = list(X.columns)
        check_features(X_val, features)
        y, y_val = np.asarray(y, dtype="int64"), np.asarray(y_val, dtype="int64")
        absent = sorted(set(range(N_CLASSES)) - set(np.unique(y)))
        if absent:
            raise ValueError(f"the meta-learner's training rows lack class(es) {absent}: cannot fit 3 classes")
        if self.backend == "local":
            model = lgb.LGBMClassifier(objective="multiclass", num_class=N_CLASSES, **self.params,
                                       **self._interaction_constraints(features))
            model.fit(X, y, eval_X=(X_val[features],), eval_y=(y_val,), eval_metric=self.val_metric,
                      callbacks=self._early_stopping())
            self.booster_ = model.booster_
            self.best_iteration_ = int(model.best_iteration_ or model.booster_.current_iteration())
            self.best_score_ = {name: dict(scores) for name, scores in model.best_score_.items()}
        else:
            self.booster_ = self._fit_dask(X, y, self._interaction_constraints(features)).booster_
            losses = staged_log_loss(self.booster_, X_val[features], y_val)
            best = len(losses) if self.early_stopping_rounds is None else early_stopping_iteration(
                losses, self.early_stopping_rounds)
            self.best_iteration_ = best
            self.best_score_ = {"valid_0": {"multi_logloss": float(losses[best - 1])}}
        self.feature_names_ = features
        self.classes_ = np.arange(N_CLASSES)
        return self

    def _early_stopping(self) -> list:
        """LightGBM's early-stopping callback on the first validation metric (none without a patience)."""
        return [] if self.early_stopping_rounds is None else [
            lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)]

    def _fit_dask(self, X: pd.DataFrame, y: np.ndarray, constraints: Mapping,
                  estimator=lgb.DaskLGBMClassifier, **objective) -> lgb.LGBMModel:
        import dask.dataframe as dd

        workers = max(1, len(self.dask_client.scheduler_info()["workers"]))
        params = {k: v for k, v in self.params.items() if k != "n_jobs"}  # workers use their own threads
        objective = objective or {"objective": "multiclass", "num_class": N_CLASSES}
        model = estimator(client=self.dask_client, **objective, **params, **constraints)
        model.fit(
            dd.from_pandas(X.reset_index(drop=True), npartitions=workers),
            dd.from_pandas(pd.Series(y), npartitions=workers),
        )
        return model.to_local()

    def _matrix(self, X: pd.DataFrame, feature_schema_hash: str | None) -> pd.DataFrame:
        check_features(X, self.feature_names_)
        if feature_schema_hash is not None and self.feature_schema_hash not in (None, feature_schema_hash):
            raise FeatureSchemaError(
                f"features computed with schema {feature_schema_hash}, the model was trained on schema "
                f"{self.feature_schema_hash}: a feature definition (window, lag, extractor inputs) changed"
            )
        return X[self.feature_names_]

    def raw_scores(self, X: pd.DataFrame, feature_schema_hash: str | None = None) -> np.ndarray:
        """Margins (n, 3) at the best iteration: what is stored."""
        matrix = self._matrix(X, feature_schema_hash)
        return self.booster_.predict(matrix, raw_score=True, num_iteration=self.best_iteration_).reshape(
            len(matrix), N_CLASSES
        )

    def predict_proba(self, X: pd.DataFrame, feature_schema_hash: str | None = None) -> np.ndarray:
        return softmax(self.raw_scores(X, feature_schema_hash))

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster_.feature_importance(importance_type="gain", iteration=self.best_iteration_)
        return {name: float(gain) for name, gain in zip(self.feature_names_, gains, strict=True)}

    def save(self, path) -> None:
        """The booster as LightGBM's text model (the caller writes it atomically)."""
        self.booster_.save_model(str(path), num_iteration=self.best_iteration_)

    @classmethod
    def load(cls, path, feature_names: Sequence[str], feature_schema_hash: str | None) -> TrishulaClassifier:
        model = cls(params={}, feature_schema_hash=feature_schema_hash)
        model.booster_ = lgb.Booster(model_file=str(path))
        if list(model.booster_.feature_name()) != list(feature_names):
            raise FeatureSchemaError(f"the booster at {path} was trained on other features than its artifact lists")
        model.best_iteration_ = model.booster_.current_iteration()
        model.feature_names_ = list(feature_names)
        model.classes_ = np.arange(N_CLASSES)
        return model


class TrishulaRanker(TrishulaClassifier):
    """The meta-learner with a ranking objective (issue 23): a LightGBM regression of the day's percentile
    rank of the forward return, on the same inputs and rows. Its prediction is a score, not class
    probabilities: it ranks coins, and the multiclass model's probabilities stay what the confidence step
    reads. `y` is the target rank in [0, 1]; early stopping (when set) on validation l2.
    """

    val_metric = "l2"

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray) -> TrishulaRanker:
        features = list(X.columns)
        check_features(X_val, features)
        y, y_val = np.asarray(y, dtype="float64"), np.asarray(y_val, dtype="float64")
        constraints = self._interaction_constraints(features)
        if self.backend == "local":
            model = lgb.LGBMRegressor(objective="regression", **self.params, **constraints)
            model.fit(X, y, eval_X=(X_val[features],), eval_y=(y_val,), eval_metric=self.val_metric,
                      callbacks=self._early_stopping())
            self.booster_ = model.booster_
            self.best_iteration_ = int(model.best_iteration_ or model.booster_.current_iteration())
            self.best_score_ = {name: dict(scores) for name, scores in model.best_score_.items()}
        else:  # all rounds on the cluster, the best one chosen afterwards by the same rule (see the classifier)
            self.booster_ = self._fit_dask(X, y, constraints, lgb.DaskLGBMRegressor, objective="regression").booster_
            rounds = self.booster_.current_iteration()
            staged = np.cumsum([self.booster_.predict(X_val[features], start_iteration=k, num_iteration=1)
                                for k in range(rounds)], axis=0)  # a loop over rounds, not rows
            losses = ((staged - y_val) ** 2).mean(axis=1)
            best = rounds if self.early_stopping_rounds is None else early_stopping_iteration(
                losses, self.early_stopping_rounds)
            self.best_iteration_ = best
            self.best_score_ = {"valid_0": {"l2": float(losses[best - 1])}}
        self.feature_names_ = features
        return self

    def raw_scores(self, X: pd.DataFrame, feature_schema_hash: str | None = None) -> np.ndarray:
        """The predicted rank (n,) at the best iteration."""
        return self.booster_.predict(self._matrix(X, feature_schema_hash), num_iteration=self.best_iteration_)

    def predict_proba(self, X: pd.DataFrame, feature_schema_hash: str | None = None) -> np.ndarray:
        raise TypeError("a TrishulaRanker predicts a rank score, not class probabilities")


class TrishulaLambdaRanker(TrishulaRanker):
    """LightGBM's lambdarank (issue 32, a part aimed at one end of the day): each day a query, `y` the relevance
    of each coin (the forward return's day quintile, 0..4; reversed for the bottom end), NDCG weighing the top
    positions of the day most. Trained locally (a day must lie in one partition); `groups`: each row's day, the
    rows sorted by it. Predicts a score like `TrishulaRanker`, whose `load` serves it."""

    val_metric = "ndcg@5"

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray,
            groups: np.ndarray | None = None, groups_val: np.ndarray | None = None) -> TrishulaLambdaRanker:
        if self.backend != "local":
            raise ValueError("a lambdarank part trains with stack.backend=local (a day's rows must share a partition)")
        if groups is None or groups_val is None:
            raise ValueError("lambdarank needs each row's day (groups) for the train and validation rows")
        features = list(X.columns)
        check_features(X_val, features)
        sizes, sizes_val = (_query_sizes(np.asarray(g)) for g in (groups, groups_val))
        model = lgb.LGBMRanker(objective="lambdarank", **self.params, **self._interaction_constraints(features))
        model.fit(X, np.asarray(y, dtype="int64"), group=sizes, eval_X=(X_val[features],),
                  eval_y=(np.asarray(y_val, dtype="int64"),), eval_group=[sizes_val], eval_at=[5],
                  callbacks=self._early_stopping())
        self.booster_ = model.booster_
        self.best_iteration_ = int(model.best_iteration_ or model.booster_.current_iteration())
        self.best_score_ = {name: dict(scores) for name, scores in model.best_score_.items()}
        self.feature_names_ = features
        return self


def _query_sizes(groups: np.ndarray) -> np.ndarray:
    """The sizes of the runs of equal values in `groups` (rows sorted by their day): LightGBM's query sizes."""
    if len(groups) and (groups[1:] < groups[:-1]).any():
        raise ValueError("lambdarank rows must be sorted by their day")
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.diff(np.r_[starts, len(groups)])

