"""Out-of-sample evaluation (SPEC §8), one job a module:

- `statistics`: daily rank ICs, Newey-West (HAC) t-statistics, paired tests by day;
- `classification`: the three-class signal's probability metrics (AUC, F1, log-loss, calibration, win rates);
- `metrics`: metrics per model and fold, paired against Trishula, and the verdict (metrics.json);
- `payoff`: what a book is paid: quantile returns, spreads, legs and each model's book, per half-year and
  market state;
- `cells`, `figures`, `payoff_section`, `report`: the self-contained HTML report and its PNG figures.
"""

from evaluation.cells import format_number, format_percent, shown_value
from evaluation.classification import (
    accuracy,
    brier_score,
    calibration_by_class,
    class_auc,
    classification_metrics,
    confusion,
    macro_f1,
    multiclass_log_loss,
    precision_recall,
    predicted_class,
    win_rate_by_bin,
)
from evaluation.metrics import (
    BLEND,
    PREDICTION_COLUMNS,
    evaluate_predictions,
    ic_over_time,
    labelled_predictions,
    score_only_models,
    verdict,
)
from evaluation.payoff import payoff_tables, run_payoff, served_panel
from evaluation.report import write_report
from evaluation.statistics import (
    TARGET,
    daily_rank_ic,
    hac_lags,
    ic_summary,
    long_hac_lags,
    mean_t,
    newey_west_t_stat,
    paired_difference,
    paired_ic_comparison,
    pooled_rank_ic,
)

__all__ = [
    "BLEND",
    "PREDICTION_COLUMNS",
    "TARGET",
    "accuracy",
    "brier_score",
    "calibration_by_class",
    "class_auc",
    "classification_metrics",
    "confusion",
    "daily_rank_ic",
    "evaluate_predictions",
    "format_number",
    "format_percent",
    "hac_lags",
    "ic_over_time",
    "ic_summary",
    "labelled_predictions",
    "long_hac_lags",
    "macro_f1",
    "mean_t",
    "multiclass_log_loss",
    "newey_west_t_stat",
    "paired_difference",
    "paired_ic_comparison",
    "payoff_tables",
    "run_payoff",
    "pooled_rank_ic",
    "precision_recall",
    "predicted_class",
    "score_only_models",
    "served_panel",
    "shown_value",
    "verdict",
    "win_rate_by_bin",
    "write_report",
]
