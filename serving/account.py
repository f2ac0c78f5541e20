"""The account's real holdings (`daily.holdings_path`): what the exchange account holds, coin by coin.

A CSV or Parquet file with the columns `symbol` (as the bars name it, e.g. BTCUSDT) and `quantity` (coin
units, negative for a short). Every row is checked: a missing column, a symbol twice, a quantity that is
not a finite number, or a coin the bars do not price stops the run with one line naming the file, the
symbol and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("symbol", "quantity")


def read_holdings(path: Path, priced: pd.Index) -> pd.Series:
    """The account's quantity by symbol (sorted); `priced`: the symbols the bars price at the decision."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (daily.holdings_path: the account's holdings, symbol and "
                                f"quantity, as CSV or Parquet)")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype={"symbol": str})
    elif path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: daily.holdings_path must be a .csv or .parquet file (symbol, quantity)")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; the holdings file needs {list(COLUMNS)}")
    twice = frame["symbol"][frame["symbol"].duplicated()]
    if not twice.empty:
        raise ValueError(f"{path}: {twice.iloc[0]} is listed more than once")
    quantity = pd.to_numeric(frame["quantity"], errors="coerce")
    bad = ~np.isfinite(quantity.to_numpy(dtype="float64", na_value=np.nan))
    if bad.any():
        row = frame[bad].iloc[0]
        raise ValueError(f"{path}: {row['symbol']}: quantity {row['quantity']!r} is not a finite number")
    unknown = sorted(set(frame["symbol"]) - set(priced))
    if unknown:
        raise ValueError(f"{path}: {unknown[0]} has no bars to price it at the decision"
                         f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''}; the account's coins "
                         f"must be among the data's symbols")
    return pd.Series(quantity.to_numpy(dtype="float64"), index=pd.Index(frame["symbol"], name="symbol"),
                     name="quantity").sort_index()
