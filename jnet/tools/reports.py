"""A measurement's two outputs: its JSON (what the docs are rendered from) and its Markdown table, side by side."""

from __future__ import annotations

import json
import os

__all__ = ["write_report"]


def write_report(out_dir: str, stem: str, report: dict, table: str) -> str:
    """``out_dir/<stem>.json`` and ``out_dir/<stem>.md``; prints the table and returns it."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(table)
    print(table)
    return table
