"""Daily operation: serve the day whose 23:00 bar is the last one, as the backtest would trade it.

    python daily.py                                             # the shipped sample, after the main job
    python daily.py data.hourly_path=/data/new.parquet daily.append=true    # an append of new bars
    python daily.py daily.holdings_path=/data/account.csv       # orders from what the account holds
    python daily.py daily.retrain=only                          # the scheduled retrain as a batch job

The jobs live in serving/ (bars, plan, day, days, account, show, run), stacking/champion.py and
backtest/live.py / backtest/orders.py; README "Daily operation" and `--help` list the exit codes.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cli import command
from serving.run import run_daily


@hydra.main(version_base="1.3", config_path="conf", config_name="daily")
@command
def main(cfg: DictConfig) -> None:
    run_daily(cfg)


if __name__ == "__main__":
    main()
