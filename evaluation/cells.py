"""The report's HTML pieces: the one formatter of every number, and table cells tagged with their JSON path.

Every number in a table is rendered by `shown_value` (`format_percent` for the fractions a reader reads as
percentages: returns, drawdowns, turnover, win rates, quantile returns; `format_number` for the rest) and its
cell carries `data-key="<json path>"` and `data-value="<repr of the value>"`, so a test can check that the
report shows exactly the numbers in the JSON files.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

import numpy as np

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f0f0f0; }
tbody th { text-align: left; font-weight: normal; }
img { max-width: 100%; display: block; margin: 0.5rem 0 1.5rem; }
.note { color: #555; font-size: 0.9rem; }
pre { background: #f7f7f7; padding: 0.5rem; font-size: 0.8rem; }
"""


def format_number(value: float | int | None) -> str:
    """The one formatter for every number in the report: 4 significant digits, None (undefined) -> "—".

    Integers (counts) print in full; floats of magnitude >= 10,000 print as whole numbers with separators
    rather than in exponent notation.
    """
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_percent(value: float | None, signed: bool = True, digits: int = 1) -> str:
    """A fraction as a percentage (0.0153 -> "+1.5 %"; unsigned "1.5 %"; `digits` decimals), None -> "—"."""
    if value is None or not np.isfinite(value):
        return "—"
    return f"{100 * value:+.{digits}f} %" if signed else f"{100 * value:.{digits}f} %"


def get_path(data: Mapping, path: str) -> object:
    """The value at a dotted path inside nested dicts; None when a segment is missing."""
    for segment in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(segment)
    return data


PERCENT_FIELDS = frozenset({"return", "gross_return", "annualised_return", "max_drawdown", "drawdown",
                            "turnover_per_day", "excess_return", "win_rate", "costs", "borrow"})
UNSIGNED_FIELDS = frozenset({"turnover_per_day", "win_rate", "costs", "borrow"})
# payoff.*: the book's fractions of equity as above; quantile returns, spreads, legs and mean daily P&L (small
# fractions) with two decimals; the volatility-scaled figures (`*_vol`) are numbers, not percentages.
PAYOFF_PERCENT_FIELDS = PERCENT_FIELDS | {"long_return", "short_return"}
PAYOFF_FINE_FIELDS = frozenset({"mean", "median", "net_mean"})


def shown_value(key: str, value: object) -> str:
    """The text a report cell shows for the value at `key`: returns and other fractions of equity in percent
    (`backtest.*` keys whose field is one of PERCENT_FIELDS, and the monthly returns; `payoff.*` returns), the
    rest as numbers."""
    if isinstance(value, str):
        return value
    if not isinstance(value, float | int) or isinstance(value, bool):
        return format_number(value)
    parts = key.split(".")
    field = parts[-1]
    if parts[0] == "backtest" and (field in PERCENT_FIELDS or parts[-2:-1] == ["per_month"]):
        return format_percent(float(value), signed=field not in UNSIGNED_FIELDS)
    if parts[0] == "payoff" and not parts[-2].endswith("_vol"):
        if field in PAYOFF_FINE_FIELDS:
            return format_percent(float(value), digits=2)
        if field in PAYOFF_PERCENT_FIELDS:
            return format_percent(float(value), signed=field not in UNSIGNED_FIELDS)
    return format_number(value)


def tagged(tag: str, key: str, value: object) -> str:
    """An element showing one value, tagged with its JSON path and the exact repr of the value."""
    value = value.item() if isinstance(value, np.generic) else value
    text = html.escape(shown_value(key, value))
    return f'<{tag} data-key="{html.escape(key)}" data-value="{html.escape(repr(value))}">{text}</{tag}>'


def cell(key: str, value: object) -> str:
    return tagged("td", key, value)


def span(key: str, value: object) -> str:
    return tagged("span", key, value)


def grid(
    prefix: str, row_header: str, rows: Sequence[tuple[str, str, Mapping]], columns: Sequence[tuple[str, str]]
) -> str:
    """A table with one row per (key segment, display name, values) and one column per (dotted path, header)."""
    head = "".join(f"<th>{html.escape(header)}</th>" for header in (row_header, *(h for _, h in columns)))
    body = "".join(
        f"<tr><th>{html.escape(display)}</th>"
        + "".join(cell(f"{prefix}.{segment}.{path}", get_path(values, path)) for path, _ in columns)
        + "</tr>"
        for segment, display, values in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def field_table(prefix: str, values: Mapping) -> str:
    """A two-column table (field, value) over a flat dict, in the dict's own order."""
    body = "".join(f"<tr><th>{html.escape(str(field))}</th>{cell(f'{prefix}.{field}', value)}</tr>"
                   for field, value in values.items())
    return f"<table><tbody>{body}</tbody></table>"


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
