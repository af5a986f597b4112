"""Your own data (minipelt/data/files.py): CSV, TSV and JSON lines files in place of a GLUE task,
end to end on the committed examples/reviews_*.csv with the tiny BERT of tests/tiny_glue.py, and a
one-line error for every bad file."""
import dataclasses
import json

import numpy as np
import pytest
import tiny_glue
from tiny_glue import cli_error, eval_cli

import train as train_cli
from minipelt.data.fewshot import few_shot
from minipelt.data.files import file_labels, read_file, run_task
from minipelt.data.glue import Split
from minipelt.training import runstate
from minipelt.training.config import OWN_DATA, TrainConfig

EXAMPLES = tiny_glue.REPO / "examples"
TRAIN, TEST = EXAMPLES / "reviews_train.csv", EXAMPLES / "reviews_test.csv"


def own_args(workspace, out, *extra, train=TRAIN, test=TEST, method="lora") -> list[str]:
    """train.py on your own files: K=40, 20 dev, one epoch, into out/seed1."""
    return ["--train-file", train, "--test-file", test, "--text-columns", "text", "--k", "40", "--method", method,
            "--model", workspace.model, "--seeds", "1", "--epochs", "1", "--batch-size", "8", "--dev-size", "20",
            "--max-seq-length", "32", "--device", "cpu", "--output-dir", out, *extra]


def task_for(train_file, text_columns=("text",), regression=False, **options):
    run = TrainConfig(train_file=str(train_file), test_file=str(train_file), text_columns=list(text_columns), k=1,
                      regression=regression, **options).resolved()
    return run_task(run)


@pytest.fixture(scope="module")
def own_runs(workspace):
    """method -> run directory of a finished run on examples/reviews_*.csv."""
    done = {}

    def run(method):
        if method not in done:
            done[method] = workspace.root / f"reviews-{method}"
            train_cli.main([str(a) for a in own_args(workspace, done[method], method=method)])
        return done[method] / "seed1"

    return run


def test_committed_csv_reads_as_a_two_class_task():
    task = task_for(TRAIN)
    assert task.label_names == ("negative", "positive") and task.metrics == ("accuracy",)
    train, test = read_file(TRAIN, task), read_file(TEST, task)
    assert (len(train), len(test), train.text_b) == (300, 100, None)
    assert set(train.text_a).isdisjoint(test.text_a)  # no test sentence is trained on
    assert train.text_a[0] == "This game was wonderful." and task.label_names[train.labels[0]] == "positive"


def test_train_eval_predict_and_text_on_the_committed_csv(own_runs, tmp_path, capsys):
    out = own_runs("lora")
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "reviews_train" and results["test"].keys() == {"accuracy"}
    assert results["options"]["labels"] == ["negative", "positive"]  # the mapping, recorded in the run
    assert results["options"]["text_columns"] == ["text"]
    capsys.readouterr()
    eval_cli.main(["--checkpoint", str(out)])  # the run's own test file, as train.py scored it
    assert json.loads(capsys.readouterr().out)["test"] == pytest.approx(results["test"], abs=1e-6)

    predictions = tmp_path / "predictions.tsv"
    eval_cli.main(["--checkpoint", str(out), "--file", str(TEST), "--predict", str(predictions)])
    assert json.loads(capsys.readouterr().out)[str(TEST)] == pytest.approx(results["test"], abs=1e-6)
    rows = [line.split("\t") for line in predictions.read_text().splitlines()]
    assert rows[0] == ["index", "prediction"] and len(rows) == 101
    assert {label for _, label in rows[1:]} <= {"negative", "positive"}
    unlabelled = tmp_path / "unlabelled.jsonl"  # the same texts as JSON lines, without labels
    texts = read_file(TEST, task_for(TRAIN)).text_a
    unlabelled.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    eval_cli.main(["--checkpoint", str(out), "--file", str(unlabelled), "--predict", str(tmp_path / "b.tsv")])
    assert json.loads(capsys.readouterr().out)[str(unlabelled)] is None
    assert (tmp_path / "b.tsv").read_text() == predictions.read_text()

    eval_cli.main(["--checkpoint", str(out), "--text", "The pizza was cold."])
    said = json.loads(capsys.readouterr().out)
    assert said["label"] in ("negative", "positive") and "gates" not in said  # LoRA has no gates
    assert sum(said["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert said["label"] == max(said["probabilities"], key=said["probabilities"].get)


def test_text_of_a_gated_method_prints_its_gates_per_layer(own_runs, capsys):
    out = own_runs("unipelt")
    capsys.readouterr()
    eval_cli.main(["--checkpoint", str(out), "--text", "The hotel was terrible."])
    said = json.loads(capsys.readouterr().out)
    assert said["gates"].keys() == {"0", "1"}  # the tiny BERT's two layers
    for kinds in said["gates"].values():
        assert kinds.keys() == {"adapter", "prefix", "lora_query", "lora_value"}
        assert all(0 < g < 1 for g in kinds.values())  # sigmoid gates of this one input


def test_text_pair_and_regression_from_json_lines(workspace, tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = tiny_glue.WORDS
    rows = [{"a": " ".join(rng.choice(words, 4)), "b": " ".join(rng.choice(words, 3)), "score": float(i % 5)}
            for i in range(70)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    train_cli.main([str(a) for a in own_args(workspace, out, "--text-columns", "a", "b", "--label-column", "score",
                                             "--regression", "--dev-file", data, train=data, test=data)])
    assert "40 train, 70 dev" in capsys.readouterr().out  # the --dev-file whole, not --dev-size 20 of the train file
    results = json.loads((out / "seed1" / "results.json").read_text())
    assert results["test"].keys() == {"spearman", "pearson"} and results["options"]["labels"] is None
    capsys.readouterr()
    eval_cli.main(["--checkpoint", str(out / "seed1"), "--text", "red boat", "--text-pair", "blue boat"])
    assert isinstance(json.loads(capsys.readouterr().out)["score"], float)


def test_labels_are_mapped_integers_by_value_and_a_dev_file_is_kept_whole(tmp_path):
    data = tmp_path / "numbers.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"text {i}, \"quoted\"\t{[10, 2, 0][i % 3]}\n" for i in range(9)))
    assert file_labels(data, "label") == ["0", "2", "10"]  # by value, not as text
    split = read_file(data, task_for(data, text_columns=("sentence",)))
    assert split.labels.tolist() == [2, 1, 0] * 3 and split.text_a[0] == 'text 0, "quoted"'
    dev = Split(["a dev text"], None, np.array([1]))
    train, kept = few_shot(split, 4, seed=1, dev_size=1000, dev=dev)  # 1000 dev would not fit in 9 examples
    assert len(train) == 4 and kept is dev


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


# (train file name, its contents, extra train.py options, what the one-line error must say)
BAD_FILES = {
    "missing column": ("a.csv", "review,label\nnice,positive\n", [], ["no column 'text'", "--text-columns"]),
    "missing label column": ("a.csv", "text,stars\nnice,positive\n", [], ["no column 'label'", "--label-column"]),
    "empty file": ("a.csv", "", [], ["is empty"]),
    "header only": ("a.csv", "text,label\n", [], ["no examples"]),
    "mixed label types": ("a.csv", "text,label\nnice,1\nbad,0\nfine,positive\n", [],
                          ["line 4", "'positive' is a string", "other labels are integers", "one kind"]),
    "mixed json label types": ("a.jsonl", '{"text": "nice", "label": 1}\n{"text": "bad", "label": "negative"}\n', [],
                               ["line 2", "'negative' is a string", "one kind"]),
    "extra field": ("a.csv", 'text,label\n"two\nlines",positive\nok,negative,extra\n', [],
                    ["line 4", "3 fields, expected 2", "comma inside an unquoted text"]),
    "unknown extension": ("a.txt", "text,label\nnice,positive\n", [], ["unknown file type '.txt'", ".csv, .tsv"]),
    "empty text": ("a.csv", 'text,label\nnice,positive\n"",negative\n', [], ["line 3", "column 'text'", "fill it"]),
    "label outside --labels": ("a.csv", "text,label\nnice,positive\nmeh,neutral\n",
                               ["--labels", "negative", "positive"],
                               ["line 3", "'neutral' is not one of the run's labels", "--labels"]),
    "not a score": ("a.csv", "text,label\nnice,high\n", ["--regression"], ["line 2", "'high'", "not a number"]),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_train_file_is_a_one_line_error(workspace, tmp_path, case):
    name, text, extra, expected = BAD_FILES[case]
    path = write(tmp_path, name, text)
    message = cli_error(train_cli.main, own_args(workspace, tmp_path / "out", *extra, train=path, test=TEST))
    assert "\n" not in message and all(part in message for part in expected), message
    assert not (tmp_path / "out" / "seed1" / "results.json").exists()


def test_test_label_outside_the_recorded_set_fails_before_results(workspace, tmp_path):
    test = write(tmp_path, "test.csv", "text,label\nnice,positive\nmeh,neutral\n")
    message = cli_error(train_cli.main, own_args(workspace, tmp_path / "out", test=test))
    assert "line 3" in message and "'neutral' is not one of the run's labels ['negative', 'positive']" in message


def test_eval_file_label_outside_the_recorded_set(own_runs, tmp_path):
    bad = write(tmp_path, "bad.csv", "text,label\nnice,positive\nmeh,neutral\n")
    message = cli_error(eval_cli.main, ["--checkpoint", own_runs("lora"), "--file", bad])
    assert "'neutral' is not one of the run's labels" in message and "\n" not in message


@pytest.mark.parametrize("args, expected", [
    ([], "give --task (a GLUE task) or --train-file (your own data)"),
    (["--train-file", TRAIN, "--task", "rte"], "not both"),
    (["--train-file", TRAIN], "--train-file needs a --test-file too"),
    (["--train-file", TRAIN, "--test-file", "nowhere.csv"], "--test-file nowhere.csv does not exist"),
    (["--task", "rte", "--text-columns", "text"], "--text-columns is for your own data"),
    (["--train-file", TRAIN, "--test-file", TEST, "--text-columns", "a", "b", "c"], "one or two column names"),
    (["--train-file", TRAIN, "--test-file", TEST, "--text-columns", "text", "label"], "the label in none of the text"),
    (["--train-file", TRAIN, "--test-file", TEST, "--text-columns", "text", "text"], "name each column once"),
])
def test_data_source_options_are_checked(workspace, tmp_path, args, expected):
    common = ["--k", "4", "--model", workspace.model, "--device", "cpu", "--output-dir", tmp_path / "out"]
    assert expected in cli_error(train_cli.main, [*args, *common])


def test_a_glue_run_recorded_before_these_options_still_resumes(tmp_path):
    """An option newer than a recorded run counts as its default (the own-data ones are unset in a GLUE
    run, --textbook off): a run directory written before they existed is the same run."""
    run = TrainConfig(task="rte", k=4, output_dir=str(tmp_path))
    old = {k: v for k, v in dataclasses.asdict(run).items() if k not in ("train_file", "textbook", *OWN_DATA)}
    recorded = {"options": old, "task": "rte", "method": "unipelt"}
    (tmp_path / "results.json").write_text(json.dumps(recorded))
    assert runstate.previous_run(tmp_path, run, overwrite=False) == recorded
    with pytest.raises(FileExistsError, match="other options \\(textbook\\)"):
        runstate.previous_run(tmp_path, dataclasses.replace(run, textbook=True), overwrite=False)
