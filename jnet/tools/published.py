"""A table published in ``docs/``: its source JSON committed as ``docs/results/<name>.json`` and its Markdown between
two marker lines of a page, ``<!-- BEGIN <name>: ... -->`` and ``<!-- END <name> -->`` (the form of the estimates
block of ``docs/jetson.md``). The command that measures writes both (:func:`publish_table`);
``tests/test_published_tables.py`` renders the table again from the committed JSON and compares it with the block
(:func:`published_block`)."""

from __future__ import annotations

import json
import os

__all__ = ["RESULTS_DIR", "results_json", "block_markers", "published_block", "publish_table"]

RESULTS_DIR = "results"  # under docs/


def results_json(name: str, docs_dir: str = "docs") -> str:
    """``docs/results/<name>.json``: where the JSON of the table ``name`` is committed."""
    return os.path.join(docs_dir, RESULTS_DIR, f"{name}.json")


def block_markers(name: str, command: str) -> tuple[str, str]:
    """The BEGIN and END lines around the table ``name`` written by ``command``."""
    begin = f"<!-- BEGIN {name}: written by `{command}` from docs/{RESULTS_DIR}/{name}.json; do not edit by hand -->"
    return begin, f"<!-- END {name} -->"


def _block_span(text: str, name: str, page: str) -> tuple[int, int]:
    """Where the block of ``name`` starts (after its BEGIN line) and ends (at its END line) in ``text``."""
    begin = text.find(f"<!-- BEGIN {name}:")
    end = text.find(f"<!-- END {name} -->")
    if begin < 0 or end < begin:
        raise ValueError(f"{page}: no '<!-- BEGIN {name}: ... -->' ... '<!-- END {name} -->' block")
    return text.index("-->", begin) + len("-->"), end


def published_block(text: str, name: str, page: str = "the page") -> str:
    """The Markdown between the marker lines of ``name`` in ``text`` (a page's contents), without the line breaks
    that end the BEGIN line and start the END line."""
    start, end = _block_span(text, name, page)
    block = text[start:end]
    if not (block.startswith("\n") and block.endswith("\n")):
        raise ValueError(f"{page}: the markers of '{name}' must stand on lines of their own")
    return block[1:-1]


def publish_table(name: str, report: dict, table: str, page: str, docs_dir: str = "docs") -> str:
    """Write ``report`` to ``docs_dir/results/<name>.json`` and ``table`` (rendered from it) between the markers
    of ``name`` in ``docs_dir/<page>``, which must hold them already; returns the JSON's path."""
    page_path = os.path.join(docs_dir, page)
    text = open(page_path).read()
    start, end = _block_span(text, name, page_path)
    path = results_json(name, docs_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    with open(page_path, "w") as f:
        f.write(text[:start] + "\n" + table.rstrip("\n") + "\n" + text[end:])
    return path
