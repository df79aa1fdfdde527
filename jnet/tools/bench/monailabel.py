"""The MONAI Label endpoint timings of ``docs/monailabel.md``: ``tests/test_monailabel.py`` times every request it
makes to a real server and writes the report (``monailabel_timings.json`` in its work folder; with
``JNET_PUBLISH_TIMINGS=1`` also ``docs/results/monailabel_timings.json`` and the table rendered from it).

The report: ``{"date", "machine", "monailabel", "timings"}``, ``timings`` mapping each row's label (Markdown) to the
seconds of every request of that kind, in the order they were made; the inference rows are one per bundle,
``"`POST /infer/<bundle>`"``."""

from __future__ import annotations

from jnet.tools.published import publish_table

__all__ = ["INFER_PREFIX", "PUBLISH_ENV", "PUBLISH_COMMAND", "format_monailabel_table", "publish_monailabel_timings"]

INFER_PREFIX = "`POST /infer/"
PUBLISHED = "monailabel_timings"  # docs/results/monailabel_timings.json and the block of that name
PUBLISHED_PAGE = "monailabel.md"
PUBLISH_ENV = "JNET_PUBLISH_TIMINGS"
PUBLISH_COMMAND = f"{PUBLISH_ENV}=1 .venv/bin/python -m pytest -s tests/test_monailabel.py"


def _seconds(values: list[float]) -> str:
    """``"0.14"`` for one value, ``"0.14 - 0.41"`` for the range of several; under 10 ms ``"< 0.01"``."""
    low, high = (("< 0.01" if v < 0.01 else f"{v:.2f}") for v in (min(values), max(values)))
    return low if low == high else f"{low} - {high}"


def format_monailabel_table(report: dict) -> str:
    """The Markdown table of a timings report: one row per kind of request, except that the first inference (the
    server loads the bundle's network then) has its own row and the other bundles' inferences share one."""
    timings = report["timings"]
    infers = [label for label in timings if label.startswith(INFER_PREFIX)]
    lines = [f"| endpoint | seconds ({report['date']}) |", "|---|---|"]
    for label, values in timings.items():
        if infers and label == infers[0]:
            lines.append(f"| {label} (the server's first inference: loading) | {_seconds(values)} |")
            if len(infers) > 1:
                others = [value for other in infers[1:] for value in timings[other]]
                count = "the other" if len(infers) == 2 else f"the {len(infers) - 1} others"
                lines.append(f"| `POST /infer/<bundle>`, {count} | {_seconds(others)} |")
        elif label not in infers:
            lines.append(f"| {label} | {_seconds(values)} |")
    return "\n".join(lines)


def publish_monailabel_timings(report: dict, docs_dir: str = "docs") -> str:
    """Write ``report`` to ``docs/results/monailabel_timings.json`` and its table (:func:`format_monailabel_table`)
    between the ``monailabel_timings`` markers of ``docs/monailabel.md``; returns the JSON's path."""
    return publish_table(PUBLISHED, report, format_monailabel_table(report), PUBLISHED_PAGE, docs_dir)
