"""Every table in docs/ that a measuring command writes (besides the sweep's) is rendered from the JSON committed
next to it in docs/results/, by the one function the command uses: rendered again here, it must equal the text in
docs/ byte for byte. A table whose JSON is not committed skips, naming the command that measures it again.

- ``docs/results/bench.json`` (``python -m jnet bench``, copied by ``python -m jnet publish``): the bench section of
  docs/results.md (:func:`jnet.tools.bench.table.render_bench_table`) and the estimates of docs/jetson.md;
- ``docs/results/processes.json`` (``python -m jnet bench_processes --publish True``): docs/multi_gpu.md;
- ``docs/results/monailabel_timings.json`` (``JNET_PUBLISH_TIMINGS=1 pytest -s tests/test_monailabel.py``):
  docs/monailabel.md.

docs/bundles.md is not measured: ``python -m jnet generate --check`` compares it with configs/ (tests/test_bundlegen.py).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import REPO
from jnet.tools.bench import monailabel, processes
from jnet.tools.bench.table import render_bench_table
from jnet.tools.published import block_markers, publish_table, published_block, results_json

DOCS = os.path.join(REPO, "docs")
BENCH_COMMAND = "python -m jnet bench && python -m jnet publish"
# (block name, page, the renderer its command uses, the command that measures and publishes it)
BLOCKS = [
    (processes.PUBLISHED, processes.PUBLISHED_PAGE, processes.format_processes_table, processes.PUBLISH_COMMAND),
    (monailabel.PUBLISHED, monailabel.PUBLISHED_PAGE, monailabel.format_monailabel_table, monailabel.PUBLISH_COMMAND),
]
IDS = [name for name, *_ in BLOCKS]


def _committed(name: str, command: str) -> dict:
    """docs/results/<name>.json, or a skip that says it is missing and how to measure it again."""
    path = results_json(name, DOCS)
    if not os.path.isfile(path):
        pytest.skip(f"docs/results/{name}.json is not committed: its table was published without its data; measure "
                    f"it again with `{command}`")
    with open(path) as f:
        return json.load(f)


def _read(page: str) -> str:
    with open(os.path.join(DOCS, page)) as f:
        return f.read()


@pytest.mark.parametrize("name, page, render, command", BLOCKS, ids=IDS)
def test_the_page_marks_its_table_with_the_command_that_writes_it(name, page, render, command):
    begin, end = block_markers(name, command)
    text = _read(page)
    assert text.count(begin) == 1 and text.count(end) == 1, f"docs/{page} lacks the lines {begin!r} / {end!r}"
    assert published_block(text, name, page).startswith("| ")  # a Markdown table, nothing else, between them


@pytest.mark.parametrize("name, page, render, command", BLOCKS, ids=IDS)
def test_the_table_renders_again_from_its_committed_json(name, page, render, command):
    report = _committed(name, command)
    assert published_block(_read(page), name, page) == render(report).rstrip("\n")


def test_the_bench_section_of_results_renders_again_from_bench_json():
    bench = _committed("bench", BENCH_COMMAND)
    text = _read("results.md")
    heading = "## Every bundle (`python -m jnet bench`)\n"
    assert text.count(heading) == 1, "docs/results.md has no bench section, but docs/results/bench.json is committed"
    section = text[text.index(heading):]
    following = section.find("\n## ", len(heading))  # the next section, if any
    section = section if following < 0 else section[: following + 1]
    assert render_bench_table(bench).rstrip("\n") + "\n" in section


def test_the_jetson_estimates_render_again_from_bench_json(tmp_path):
    from jnet.tools.sweep.publish import _measured_records, _update_jetson_estimates  # what `python -m jnet publish` uses

    bench = _committed("bench", BENCH_COMMAND)
    page = tmp_path / "jetson.md"
    shutil.copyfile(os.path.join(DOCS, "jetson.md"), page)
    _update_jetson_estimates(bench, str(page), _measured_records(os.path.join(DOCS, "results")))
    assert page.read_text() == _read("jetson.md")


def _page_with_block(docs_dir, name: str, command: str) -> str:
    begin, end = block_markers(name, command)
    (docs_dir / "page.md").write_text(f"# Page\n\nBefore.\n\n{begin}\n| old | table |\n{end}\n\nAfter.\n")
    return "page.md"


def test_publish_writes_the_json_and_replaces_only_the_block(tmp_path):
    page = _page_with_block(tmp_path, "demo", "demo command")
    report = {"rows": [1, 2]}
    path = publish_table("demo", report, "| new |\n|---|\n", page, str(tmp_path))
    assert path == str(tmp_path / "results" / "demo.json") and json.loads(open(path).read()) == report
    text = (tmp_path / page).read_text()
    assert published_block(text, "demo") == "| new |\n|---|"
    assert text.startswith("# Page\n\nBefore.\n\n<!-- BEGIN demo: written by `demo command`") and text.endswith("<!-- END demo -->\n\nAfter.\n")
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no '<!-- BEGIN demo"):
        publish_table("demo", report, "| t |", "bare.md", str(tmp_path))


def test_the_processes_table_published_renders_again_from_its_json(tmp_path):
    page = _page_with_block(tmp_path, processes.PUBLISHED, processes.PUBLISH_COMMAND)
    (tmp_path / processes.PUBLISHED_PAGE).write_text((tmp_path / page).read_text())
    run = {"command": "train", "processes": 1, "batch_size": 4, "wall_s": 18.1, "engine_s": 11.1, "best_dice": 0.33512, "log": "x"}
    report = {"epochs": 10, "runs": [run, {**run, "command": "evaluate", "processes": 2, "batch_size": None}]}
    path = processes.publish_processes(report, str(tmp_path))
    text = (tmp_path / processes.PUBLISHED_PAGE).read_text()
    assert published_block(text, processes.PUBLISHED) == processes.format_processes_table(json.load(open(path)))
    assert "| train, 10 epochs | 1 | 4 | 18.1 | 11.1 | 0.335 |" in text
    assert "| evaluate, every volume (`--val_fold -1`) | 2 | - | 18.1 | 11.1 | 0.335 |" in text


def test_the_monailabel_table_gives_the_first_inference_its_row_and_the_others_their_range():
    timings = {
        "`monailabel start_server` until `GET /info/` answers": [16.2],
        "`GET /info/`": [0.06],
        "`POST /infer/a`": [5.6],
        "`POST /infer/b`": [0.41],
        "`POST /infer/c`": [0.14],
        "`DELETE /datastore/label`, each": [0.004, 0.002],
        "`PUT /datastore/label` (a BraTS label submitted), each": [0.004, 0.02],
    }
    table = monailabel.format_monailabel_table({"date": "2026-12-01", "timings": timings}).splitlines()
    assert table == [
        "| endpoint | seconds (2026-12-01) |",
        "|---|---|",
        "| `monailabel start_server` until `GET /info/` answers | 16.20 |",
        "| `GET /info/` | 0.06 |",
        "| `POST /infer/a` (the server's first inference: loading) | 5.60 |",
        "| `POST /infer/<bundle>`, the 2 others | 0.14 - 0.41 |",
        "| `DELETE /datastore/label`, each | < 0.01 |",
        "| `PUT /datastore/label` (a BraTS label submitted), each | < 0.01 - 0.02 |",
    ]


def test_results_page_renders_again_from_the_committed_sweeps_and_bench():
    """docs/results.md is written by ``python -m jnet publish`` from docs/results/sweep.json, sweep_<name>.json and
    bench.json alone: rendered again from them it is the committed page, byte for byte."""
    from jnet.tools.sweep.publish import render_results_page

    _committed("sweep", "python -m jnet sweep && python -m jnet publish")
    assert render_results_page(os.path.join(DOCS, "results")) == _read("results.md")
