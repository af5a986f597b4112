"""bench/speed/overhead.py: deployed UniPELT against plain BERT, op by op, on a tiny model."""
import dataclasses

import pytest
from conftest import TINY, write_tiny_bert

from bench.speed import overhead


def test_the_ops_only_unipelt_runs_show_as_its_difference(tmp_path):
    tiny_dir = tmp_path / "tiny"  # a vocabulary past the ids bench batches draw from (1000 and up)
    write_tiny_bert(tiny_dir, dataclasses.replace(TINY, vocab_size=1100))
    overhead.main(["--model", str(tiny_dir), "--shape", "2x8", "--rounds", "1", "--calls", "2", "--threads", "1",
                   "--top", "200", "--out-dir", str(tmp_path)])
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in (tmp_path / "overhead_unipelt_tiny_2x8.md").read_text().splitlines() if line.startswith("| ")]
    by_op = {}
    for name, _, plain, method, difference in rows[2:]:
        by_op.setdefault(name, []).append((float(plain), float(method), float(difference)))
    # The gated prefix's mixture (lerp) and the gates' sigmoid run in UniPELT only.
    for only_unipelt in ("aten::lerp", "aten::sigmoid"):
        assert all(plain == 0 and method > 0 for plain, method, _ in by_op[only_unipelt])
    (plain_all, method_all, difference_all), = by_op["**all**"]
    assert difference_all == pytest.approx(method_all - plain_all, abs=0.011)


def test_fine_tuning_is_the_baseline_not_a_method_to_compare(tmp_path):
    with pytest.raises(SystemExit):
        overhead.main(["--method", "finetune", "--out-dir", str(tmp_path)])
