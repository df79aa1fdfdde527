"""The README's first command, ``python -m jnet demo``, on a short budget: both variants trained by the bundle's own
commands, evaluated at 256x256, and the table printed from the evaluation's metric files."""

import os

from jnet.tools.demo import VARIANTS, run_demo


def test_demo_trains_both_variants_and_prints_the_table(tmp_path, capsys):
    results = run_demo(work_dir=str(tmp_path), epochs=2, num_train=6)
    assert [r.name for r in results] == list(VARIANTS)
    head, baseline = results
    assert baseline.added_parameters == 0 and 0 < head.added_parameters < 200  # the paper's "under 200" head
    for result in results:
        assert set(result.jaccard) == set(result.dice) == {"PZ", "TZ", "mean"}
        assert all(0.0 <= v <= 1.0 for v in result.dice.values())
        assert all(result.jaccard[c] <= result.dice[c] + 1e-9 for c in ("PZ", "TZ"))  # J <= D for every volume
        assert os.path.isfile(tmp_path / result.name.split()[0] / "eval" / "val_mean_dice_summary.csv")
    table = capsys.readouterr().out.splitlines()
    rows = [line for line in table if line.startswith("| head") or line.startswith("| baseline")]
    assert len(rows) == 2 and f"{head.jaccard['mean']:.3f}" in rows[0]
