"""Daily serving: the day that just closed, served as the backtest would trade it (daily.py's jobs).

- `settings`: the daily run's typed settings and the strategy, checked once from the config;
- `bars`: the bars in, checked and merged into the dataset's history, and cut at a day;
- `plan`: which days to serve (the latest, missed ones first) and for which book;
- `day`: one served day: features, champion, signals, orders, committed;
- `days`: the served days on disk, one folder a day committed whole, trusted through its manifest;
- `account`: the account's real holdings;
- `signals`: the backfill and the day's signals through the walk-forward's path;
- `show`: what the run prints;
- `run`: the daily run from end to end.
"""
