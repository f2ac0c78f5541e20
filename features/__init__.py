"""Point-in-time features, labels and regime inputs built from validated market data.

Conventions shared by every builder:
- frames are long, sorted by (symbol, ts), one contiguous block per symbol on a complete grid;
- a daily row `ts = d` (00:00 UTC) is known at the close of day d, i.e. at d + 1 day; an hourly
  row `ts = t` is known at t + 1 hour. No value in a row may depend on data after that time;
- builders return frames aligned row for row with their input (same index), NaN where the
  history is too short.
"""
