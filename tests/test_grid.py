"""bench/grid/grid.py: the cell list and its shards, resuming, and the tables, on a tiny model and tiny data.

The end-to-end test trains 2 methods x 2 seeds of tiny STS-B in two shards, re-runs the whole grid
(everything skipped), then aggregates. The tables' arithmetic is checked on made-up results whose
values are known, and the paper's numbers against the Avg. column the paper prints.
"""
import csv
import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest

from bench.grid import baselines, grid, paper, plots, report
from minipelt.data.glue import get_task


def grid_args(workspace, *extra: str) -> list[str]:
    return ["--tasks", "stsb", "--ks", "16", "--methods", "lora", "unipelt", "--seeds", "1", "2",
            "--model", str(workspace.model), "--data-dir", str(workspace.glue), "--device", "cpu", "--epochs", "1",
            "--dev-size", "16", "--runs-dir", str(workspace.root / "runs"),
            "--record-dir", str(workspace.root / "records"), "--results-dir", str(workspace.root / "results"), *extra]


def listed(capsys, argv: list[str]) -> list[str]:
    """The run names `--list` prints."""
    capsys.readouterr()
    assert grid.main([*argv, "--list"]) == 0
    return [line.split()[1] for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_paper_numbers_match_the_papers_averages():
    """A check of the transcription: each row's mean is its printed Avg. (from unrounded scores, so the
    two differ a little: 71.8025 vs 71.81 for Prefix at K = 1000 is the largest)."""
    assert paper.TABLE1.keys() == paper.TABLE1_AVG.keys()
    for k, methods in paper.TABLE1_AVG.items():
        assert methods.keys() == paper.TABLE1[k].keys()
        for method, avg in methods.items():
            assert np.mean(paper.TABLE1[k][method]) == pytest.approx(avg, abs=0.01), (k, method)


def test_shards_split_the_sorted_run_list_exactly_once(capsys):
    options = ["--tasks", "stsb", "rte", "--ks", "100", "16", "--methods", "unipelt", "lora", "--seeds", "2", "1"]
    everything = listed(capsys, options)
    assert len(everything) == len(set(everything)) == 16
    assert everything[0] == "rte/k16/lora/seed1"  # the paper's task and method order, then K, then seed
    reordered = ["--tasks", "rte", "stsb", "--ks", "16", "100", "--methods", "lora", "unipelt", "--seeds", "1", "2"]
    assert listed(capsys, reordered) == everything  # shards agree however the options were written
    shards = [listed(capsys, [*options, "--shard", f"{i}/3"]) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(everything)
    assert shards[1] == everything[1::3]


@pytest.mark.parametrize("shard", ["2/2", "0/0", "1", "a/b"])
def test_a_bad_shard_is_refused(shard, capsys):
    with pytest.raises(SystemExit):
        grid.main(["--shard", shard, "--list"])
    assert "--shard" in capsys.readouterr().err


def test_grid_runs_in_shards_skips_finished_runs_and_aggregates(workspace, capsys):
    assert grid.main(grid_args(workspace, "--shard", "0/2")) == 0
    assert grid.main(grid_args(workspace, "--shard", "1/2")) == 0
    files = sorted((workspace.root / "runs").rglob("results.json"))
    assert [f.parent.relative_to(workspace.root / "runs").as_posix() for f in files] == [
        "stsb/k16/lora/seed1", "stsb/k16/lora/seed2", "stsb/k16/unipelt/seed1", "stsb/k16/unipelt/seed2"]
    before = [f.read_text() for f in files]
    records = sorted((workspace.root / "records").rglob("*.json"))
    assert [r.relative_to(workspace.root / "records").as_posix() for r in records] == [
        f.parent.relative_to(workspace.root / "runs").as_posix() + ".json" for f in files]
    assert [json.loads(r.read_text()) for r in records] == [json.loads(text) for text in before]
    capsys.readouterr()
    assert grid.main(grid_args(workspace)) == 0  # the whole grid again: nothing left to train
    assert capsys.readouterr().out.count("skipped") == 4
    assert [f.read_text() for f in files] == before
    shutil.rmtree(workspace.root / "runs")  # another machine: only the committed records came along
    assert grid.main(grid_args(workspace)) == 0 and not (workspace.root / "runs").exists()

    assert grid.main(grid_args(workspace, "--aggregate")) == 0
    printed = capsys.readouterr().out
    results = [json.loads(text) for text in before]
    out = workspace.root / "results"
    table1 = (out / "grid_table1.md").read_text()
    assert "## K = 16: ours" in table1 and "The paper has no numbers for K = 16" in table1
    unipelt_row = next(line for line in table1.splitlines() if line.startswith("| UniPELT (APL) |"))
    assert unipelt_row.count(" - ") == 7 and "(1/8)" in unipelt_row  # one task of eight: said so
    rows = {(r["method"], r["task"]): r for r in read_csv(out / "grid_table1.csv")}
    lora = [100 * r["test"]["spearman"] for r in results if r["method"] == "lora"]
    assert float(rows["lora", "stsb"]["mean"]) == pytest.approx(np.mean(lora), abs=1e-4)
    assert rows["lora", "stsb"]["seeds"] == "2" and rows["lora", "rte"]["mean"] == ""
    assert "No task has results for all of adapter" in (out / "grid_table2.md").read_text()
    assert "| trivial predictor |" in (out / "grid_check.md").read_text()  # with --data-dir: computed
    if importlib.util.find_spec("matplotlib") is None:  # an optional extra (pip install -e .[plots])
        assert "plots skipped: matplotlib is not installed" in printed
    else:
        assert (out / "grid_scores.png").stat().st_size > 0 and (out / "grid_gates.png").stat().st_size > 0
        assert "grid_table2.png not written" in printed  # no task has all five methods here


def write_result(root, task, k, method, seed, score):
    directory = root / task / f"k{k}" / method
    directory.mkdir(parents=True, exist_ok=True)
    metric = {"stsb": "spearman", "cola": "mcc", "mrpc": "f1", "qqp": "f1"}.get(task, "accuracy")
    (directory / f"seed{seed}.json").write_text(json.dumps(
        {"task": task, "method": method, "k": k, "seed": seed, "model": "made-up", "test": {metric: score / 100},
         "gates": {"0.adapter": 0.25, "1.adapter": 0.75} if method == "unipelt" else {}}))


def test_tables_from_known_results(tmp_path):
    """The paper's own K=100 numbers as our results (two seeds at -1/+1 around them; fine-tuning at +1/-1)
    must reproduce its table and its UniPELT-minus-best and UniPELT-minus-fine-tuning differences, paired
    by seed; one missing task is '-' and a 7/8 average."""
    runs = tmp_path / "runs"
    for method in ("finetune", "adapter", "prefix", "lora", "unipelt"):
        offsets = ((1, 1.0), (2, -1.0)) if method == "finetune" else ((1, -1.0), (2, 1.0))
        for i, task in enumerate(paper.TASKS):
            if (method, task) != ("prefix", "qqp"):
                for seed, offset in offsets:
                    write_result(runs, task, 100, method, seed, paper.TABLE1[100][method][i] + offset)
    assert grid.main(["--record-dir", str(runs), "--results-dir", str(tmp_path / "out"), "--aggregate"]) == 0

    table1 = {(r["method"], r["task"]): r for r in read_csv(tmp_path / "out" / "grid_table1.csv")}
    assert float(table1["lora", "cola"]["mean"]) == pytest.approx(13.31)
    assert float(table1["lora", "cola"]["std"]) == pytest.approx(1.0)
    assert float(table1["unipelt", "avg"]["mean"]) == pytest.approx(62.59, abs=0.006)
    assert table1["prefix", "qqp"]["mean"] == "" and table1["prefix", "avg"]["tasks_averaged"] == "7"
    assert float(table1["prefix", "avg"]["mean"]) == pytest.approx(np.mean(paper.TABLE1[100]["prefix"][:7]))
    prefix_row = next(line for line in (tmp_path / "out" / "grid_table1.md").read_text().splitlines()
                      if line.startswith("| Prefix |"))
    assert prefix_row.split(" | ")[8] == "-" and "(7/8)" in prefix_row

    table2 = {r["task"]: r for r in read_csv(tmp_path / "out" / "grid_table2.csv")}
    for task in paper.TASKS[:7]:  # QQP lacks prefix: no upper bound there
        row = table2[task]
        assert row["best_submodule"] == row["paper_best_submodule"]
        assert float(row["difference"]) == pytest.approx(float(row["paper_difference"]), abs=1e-3)
        assert float(row["vs_finetune"]) == pytest.approx(float(row["paper_vs_finetune"]), abs=1e-3)
        assert float(row["difference_std"]) == pytest.approx(0.0, abs=1e-9)  # both moved together, seed by seed
        assert float(row["vs_finetune_std"]) == pytest.approx(2.0)  # -2 on seed 1, +2 on seed 2
    assert table2["qqp"]["difference"] == "" and table2["qqp"]["paper_difference"] != ""
    assert float(table2["sst2"]["difference"]) == pytest.approx(82.36 - 81.56)  # UniPELT vs LoRA on SST-2
    assert float(table2["sst2"]["vs_finetune"]) == pytest.approx(82.36 - 79.61)
    markdown = (tmp_path / "out" / "grid_table2.md").read_text()
    assert "| ours: UniPELT − fine-tuning | +2.75 ± 2.00 |" in markdown


def write_test_file(glue, task: str, labels: list[str]) -> None:
    """A GLUE-layout test file (dev.tsv) of `task` with these labels and placeholder texts."""
    header = {"sst2": "sentence\tlabel", "mrpc": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
              "stsb": "index\tsentence1\tsentence2\tscore"}[task]
    row = {"sst2": "a film\t{}", "mrpc": "{}\t1\t2\ta b\tc d", "stsb": "0\ta b\tc d\t{}"}[task]
    directory = glue / get_task(task).dir_name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dev.tsv").write_text("\n".join([header, *(row.format(label) for label in labels)]) + "\n")


def test_the_trivial_predictor_is_the_best_constant(tmp_path):
    write_test_file(tmp_path, "sst2", ["1", "1", "0", "1"])  # majority 1: accuracy 3/4
    write_test_file(tmp_path, "mrpc", ["0", "0", "1"])  # always 1: F1 2/(2 + 2); always 0: F1 0
    write_test_file(tmp_path, "stsb", ["0.5", "2.0", "4.5"])  # a constant has no Spearman: 0
    assert baselines.trivial_score("sst2", tmp_path) == pytest.approx(75.0)
    assert baselines.trivial_score("mrpc", tmp_path) == pytest.approx(50.0)
    assert baselines.trivial_score("stsb", tmp_path) == 0.0


def test_the_check_table_marks_scores_near_the_trivial_predictor(tmp_path, capsys):
    write_test_file(tmp_path / "glue", "sst2", ["1", "1", "0", "1"])
    for method, score in (("finetune", 90.0), ("prefix", 75.5), ("lora", 76.5)):
        write_result(tmp_path / "runs", "sst2", 100, method, 1, score)
    write_result(tmp_path / "runs", "sst2", 100, "lora", 2, 50.0)  # another seed: not in the check
    assert grid.main(["--record-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "out"),
                      "--data-dir", str(tmp_path / "glue"), "--aggregate"]) == 0
    text = (tmp_path / "out" / "grid_check.md").read_text()
    assert "| Prefix | 75.50 ≤ |" in text and "| LoRA | 76.50 |" in text and "| Fine-tuning | 90.00 |" in text
    assert "| trivial predictor | 75.00 |" in text and "or below: Prefix on SST-2." in text
    assert "| trivial predictor | 75.00 | - |" in (tmp_path / "out" / "grid_table1.md").read_text()


def test_without_matplotlib_the_tables_are_written_and_the_plots_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    write_result(tmp_path / "runs", "rte", 100, "unipelt", 1, 55.0)
    assert grid.main(["--record-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "out"), "--aggregate"]) == 0
    printed = capsys.readouterr().out
    assert "plots skipped: matplotlib is not installed (pip install -e .[plots])" in printed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "grid_check.md", "grid_table1.csv", "grid_table1.md", "grid_table2.csv", "grid_table2.md"]


def test_the_header_names_each_departure_and_counts_runs_where_they_differ():
    """A setting every run shares is named once; one the runs differ in gets each value's run count."""
    runs = [dict(model="minilm", options=dict(precision=p, eval_every=28, epochs=30)) for p in ("bf16", "bf16", "fp32")]
    line = baselines.settings_line(runs)
    assert "model minilm (paper: bert-base-uncased)" in line
    assert "precision bf16 (2 runs) / fp32 (1 run) (paper: fp32)" in line
    assert "eval every 28 steps (paper: once an epoch)" in line
    same = baselines.settings_line([dict(model="minilm", options=dict(precision="bf16", epochs=30))])
    assert "precision bf16 (paper: fp32)" in same


def test_table2_figure_draws_the_paired_differences_beside_the_papers(tmp_path, monkeypatch):
    """The paper's K=100 numbers as ours (seeds at -1/+1): every bar is the paper's difference, every diamond too."""
    pytest.importorskip("matplotlib")
    cells = {(100, m, t): {1: paper.TABLE1[100][m][i] - 1, 2: paper.TABLE1[100][m][i] + 1}
             for m in ("finetune", "adapter", "prefix", "lora", "unipelt") for i, t in enumerate(paper.TASKS)}
    compared = report.compared_by_k(cells)
    theirs = {(100, t): report.paper_comparison(100, t) for t in paper.TASKS}
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda plt, fig, path: drawn.setdefault("fig", fig))
    plots.plot_table2(plots.import_pyplot(), compared, theirs, tmp_path / "t2.png")
    left, right = drawn["fig"].axes
    for ax, field in ((left, "vs_best"), (right, "vs_finetune")):
        bars = [patch.get_width() for patch in ax.patches]  # top to bottom: paper.TASKS order
        assert bars == pytest.approx([theirs[100, t][field][0] for t in paper.TASKS])
        diamonds = [line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() == "D"]
        assert diamonds == pytest.approx(bars)
    labels = [tick.get_text() for tick in left.get_yticklabels()]
    assert labels[0] == "SST-2, K = 100 (vs LoRA)" and len(labels) == len(paper.TASKS)
