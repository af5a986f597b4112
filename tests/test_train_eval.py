"""End to end on a tiny random BERT and tiny GLUE-layout data (tests/tiny_glue.py):
train -> results.json + best.safetensors -> eval.py reproduces the recorded test metrics and writes
predictions; several seeds -> summary.json.

The few-shot protocol itself (train and dev disjoint, the same for a seed, different across seeds,
first K then the next dev_size of the seed's permutation) is tested on fewshot.few_shot in test_fewshot.py.
"""
import dataclasses
import importlib
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import tiny_glue
from conftest import TINY
from safetensors.torch import load_file

import train as train_cli
from minipelt.data.glue import get_task, load_split
from minipelt.data.metrics import compute_metrics
from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.training.trainer import train

eval_cli = importlib.import_module("eval")  # a plain `import eval` would shadow the builtin


@pytest.fixture(scope="module")
def runs(workspace):
    """run(task, method) -> (output dir, results), each trained once for the module."""
    done = {}

    def run(task: str, method: str):
        if (task, method) not in done:
            out = workspace.root / f"{task}-{method}"
            run = tiny_glue.config(workspace.model, workspace.glue, out, task=task, method=method)
            done[task, method] = out, train(run)
        return done[task, method]

    return run


@pytest.mark.parametrize("method", ["finetune", "unipelt"])
@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_eval_reproduces_recorded_test_metrics_and_predicts(workspace, runs, tmp_path, task, method):
    out, results = runs(task, method)
    predictions = tmp_path / "predictions.tsv"
    done = tiny_glue.run_script("eval.py", "--checkpoint", out, "--data-dir", workspace.glue, "--device", "cpu",
                                "--predict", predictions)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["task"] == task and printed["test"].keys() == results["test"].keys()
    for metric, value in results["test"].items():
        assert printed["test"][metric] == pytest.approx(value, abs=1e-6), metric

    rows = [line.split("\t") for line in predictions.read_text().splitlines()]
    assert rows[0] == ["index", "prediction"]
    assert [int(index) for index, _ in rows[1:]] == list(range(tiny_glue.N_TEST))
    task_info = get_task(task)
    if task_info.is_regression:
        assert all(np.isfinite(float(value)) for _, value in rows[1:])
    else:  # class names, and they score what eval.py printed
        ids = [task_info.label_names.index(value) for _, value in rows[1:]]
        labels = load_split(task, "test", workspace.glue).labels
        assert compute_metrics(task_info.metrics, np.array(ids), labels) == printed["test"]


def test_results_json_records_the_run(workspace, runs):
    out, results = runs("stsb", "unipelt")
    assert {"task", "method", "k", "seed", "model", "dev", "test", "trainable_params", "gates", "wall_seconds",
            "options"} <= results.keys()
    run = tiny_glue.config(workspace.model, workspace.glue, out).resolved()
    assert (results["task"], results["method"], results["k"], results["seed"], results["model"]) == (
        "stsb", "unipelt", 40, 1, str(workspace.model))
    assert results["options"] == json.loads(json.dumps(dataclasses.asdict(run)))
    assert results["dev"].keys() == results["test"].keys() == {"spearman", "pearson"}
    assert results["wall_seconds"] >= 0
    assert json.loads((out / "results.json").read_text()) == results
    # best.safetensors holds exactly the trainable parameters
    assert results["trainable_params"] == sum(t.numel() for t in load_file(out / "best.safetensors").values())
    # one mean gate value per layer and kind: adapter, prefix, and the two LoRA gates (query, value)
    kinds = ("adapter", "prefix", "lora_query", "lora_value")
    assert results["gates"].keys() == {f"{layer}.{kind}" for layer in range(TINY.num_hidden_layers) for kind in kinds}
    assert all(0 < g < 1 for g in results["gates"].values())

    _, finetuned = runs("rte", "finetune")
    everything = sum(p.numel() for p in SequenceClassifier(BertModel(TINY), num_labels=2).parameters())
    assert finetuned["trainable_params"] == everything and finetuned["gates"] == {}
    assert finetuned["test"].keys() == {"accuracy"}


def test_results_json_has_the_history_of_every_dev_evaluation(runs):
    """results.json "history" (the schema of docs/protocol.md): per dev evaluation its step, dev metrics,
    each gate kind's mean per layer, and per layer the prefix's share of the attention mass."""
    _, results = runs("stsb", "unipelt")
    history = results["history"]
    assert [entry["step"] for entry in history] == [5, 10, 15]  # one evaluation an epoch of 5 steps
    best = next(entry for entry in history if entry["step"] == results["best_step"])
    assert best["dev"] == {name: round(value, 6) for name, value in results["dev"].items()}
    layers = TINY.num_hidden_layers
    for entry in history:
        assert entry.keys() == {"step", "dev", "gates", "prefix_share"}
        assert entry["gates"].keys() == {"adapter", "prefix", "lora_query", "lora_value"}
        assert all(len(means) == layers and all(0 < g < 1 for g in means) for means in entry["gates"].values())
        assert len(entry["prefix_share"]) == layers and all(0 < s < 1 for s in entry["prefix_share"])
    assert history[0]["gates"] != history[-1]["gates"]  # they are measured at each evaluation, not copied

    _, finetuned = runs("rte", "finetune")  # no gates, no prefix
    assert [(entry["gates"], entry["prefix_share"]) for entry in finetuned["history"]] == [({}, None)] * 3


def test_eval_on_own_file_with_and_without_labels(workspace, runs, tmp_path, capsys):
    out, results = runs("rte", "unipelt")
    test_file = workspace.glue / "RTE" / "dev.tsv"
    eval_cli.main(["--checkpoint", str(out), "--file", str(test_file), "--predict", str(tmp_path / "a.tsv")])
    assert json.loads(capsys.readouterr().out)[str(test_file)] == results["test"]
    unlabelled = tmp_path / "unlabelled.tsv"  # the same rows without the label column
    lines = test_file.read_text().splitlines()
    unlabelled.write_text("".join("\t".join(line.split("\t")[:3]) + "\n" for line in lines))
    eval_cli.main(["--checkpoint", str(out), "--file", str(unlabelled), "--predict", str(tmp_path / "b.tsv")])
    assert json.loads(capsys.readouterr().out)[str(unlabelled)] is None  # no labels: nothing scored
    assert (tmp_path / "b.tsv").read_text() == (tmp_path / "a.tsv").read_text()


def test_eval_of_a_run_directory_reads_the_runs_data_dir(workspace, runs, capsys, monkeypatch):
    """Without --data-dir, eval.py evaluates on the data the run was trained with, not on the hub's."""
    out, results = runs("stsb", "unipelt")
    assert results["options"]["data_dir"] == str(workspace.glue)

    def offline(*args, **kwargs):
        raise ConnectionError("this test runs offline: the hub must not be asked")

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=offline))
    monkeypatch.delenv("MINIPELT_GLUE_DIR", raising=False)
    capsys.readouterr()
    eval_cli.main(["--checkpoint", str(out), "--device", "cpu"])
    assert json.loads(capsys.readouterr().out)["test"] == results["test"]


def test_two_seeds_write_summary_with_mean_and_std(workspace, tmp_path):
    root = tmp_path / "runs"
    train_cli.main(tiny_glue.cli_args(workspace.model, workspace.glue, root, "--epochs", "1", "--seeds", "1", "2",
                                      task="rte", method="lora"))
    per_seed = [json.loads((root / f"seed{seed}" / "results.json").read_text()) for seed in (1, 2)]
    assert [r["seed"] for r in per_seed] == [1, 2]
    summary = json.loads((root / "summary.json").read_text())
    accuracies = [r["test"]["accuracy"] for r in per_seed]
    assert (summary["task"], summary["method"], summary["k"], summary["seeds"]) == ("rte", "lora", 40, [1, 2])
    assert summary["test"]["accuracy"] == {"mean": pytest.approx(np.mean(accuracies)),
                                           "std": pytest.approx(np.std(accuracies))}


def test_a_textbook_run_is_recorded_and_evaluates_alike_on_either_path(workspace, tmp_path):
    """--textbook trains on the textbook path and says so in results.json; eval.py gives its test
    metrics to 1e-5 with the kernels and with --textbook."""
    run = dataclasses.replace(tiny_glue.config(workspace.model, workspace.glue, tmp_path / "run", task="rte",
                                               method="unipelt"), textbook=True)
    results = train(run)
    assert results["options"]["textbook"] is True
    for flags in ((), ("--textbook",)):
        done = tiny_glue.run_script("eval.py", "--checkpoint", tmp_path / "run", "--data-dir", workspace.glue,
                                    "--device", "cpu", *flags)
        assert done.returncode == 0, done.stderr
        for metric, value in results["test"].items():
            assert json.loads(done.stdout)["test"][metric] == pytest.approx(value, abs=1e-5), (flags, metric)
