"""GLUE data: the task table, reading and validating tsv files, loading from the hub.

Most tests write tiny GLUE-layout tsv files into tmp_path; one reads the real local data
in ../shared/data/glue (the repo root's sibling) if it is there.
"""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minipelt.data.glue import GLUE_DIR_ENV, TASKS, Split, get_task, load_split, read_tsv_split
from minipelt.data.metrics import METRICS

LOCAL_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"


def write(root: Path, relative: str, lines: list[str], bom: bool = False) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


@pytest.fixture(autouse=True)
def no_env_dir(monkeypatch):
    """Tests choose their data source explicitly; a developer's MINIPELT_GLUE_DIR must not leak in."""
    monkeypatch.delenv(GLUE_DIR_ENV, raising=False)


# ---------------------------------------------------------------- task table


def test_task_table_is_consistent():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"}
    for name, task in TASKS.items():
        assert task.main_metric == task.metrics[0] and set(task.metrics) <= set(METRICS)
        assert set(task.hub_splits) == set(task.split_names)
        assert len(task.text_columns) == len(task.hub_text_columns or task.text_columns) in (1, 2)
    assert get_task("SST2").num_labels == 2 and get_task("mnli").num_labels == 3
    assert get_task("stsb").num_labels == 1 and get_task("stsb").is_regression
    with pytest.raises(ValueError, match="unknown GLUE task 'wnli'; choose one of: cola, sst2"):
        get_task("wnli")


# ---------------------------------------------------------------- reading tsv files


def test_glue_layout_with_header(tmp_path):
    write(tmp_path, "RTE/train.tsv", [RTE_HEADER, '0\tA "quoted" premise.\tA hypothesis.\tnot_entailment',
                                      "1\tSecond premise.\tSecond hypothesis.\tentailment"])
    split = load_split("rte", "train", tmp_path)
    assert split.text_a == ['A "quoted" premise.', "Second premise."]
    assert split.text_b == ["A hypothesis.", "Second hypothesis."]
    assert split.labels.tolist() == [1, 0] and split.labels.dtype == np.int64


def test_cola_has_no_header(tmp_path):
    write(tmp_path, "CoLA/dev.tsv", ["gj04\t1\t\tGood sentence.", "gj04\t0\t*\tBad sentence good."])
    split = load_split("cola", "test", tmp_path)
    assert split.text_a == ["Good sentence.", "Bad sentence good."] and split.text_b is None
    assert split.labels.tolist() == [1, 0]


def test_bom_in_header_is_ignored(tmp_path):
    write(tmp_path, "MRPC/dev.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t11\t12\tOne.\tUno."],
          bom=True)
    split = load_split("mrpc", "test", tmp_path)
    assert (split.text_a, split.text_b, split.labels.tolist()) == (["One."], ["Uno."], [1])


def test_columns_found_by_header_name(tmp_path):
    """The local MNLI dev file has only three columns; a reordered header works too."""
    write(tmp_path, "MNLI/dev_matched.tsv", ["gold_label\tsentence2\tsentence1", "neutral\tHyp.\tPrem."])
    split = load_split("mnli", "test", tmp_path)
    assert (split.text_a, split.text_b, split.labels.tolist()) == (["Prem."], ["Hyp."], [1])


def test_stsb_scores_are_float32(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    write(tmp_path, "STS-B/train.tsv", [header, "0\tg\tf\ty\t0\tn\tn\tA plane.\tAn air plane.\t4.750"])
    split = load_split("stsb", "train", tmp_path)
    assert split.labels.dtype == np.float32 and split.labels.tolist() == [4.75]


@pytest.mark.parametrize(
    "task, file, lines, message",
    [
        ("rte", "RTE/dev.tsv", [RTE_HEADER, "0\ta\tb\tentailment", "1\ta\tb"],
         r"line 3: 3 tab-separated columns, expected 4"),
        ("rte", "RTE/dev.tsv", [RTE_HEADER, "0\ta\tb\tentailment", "1\t \tb\tentailment"],
         r"line 3: empty text in column 'sentence1'"),
        ("rte", "RTE/dev.tsv", [RTE_HEADER, "0\ta\tb\tentailment", "1\ta\tb\tneutral"],
         r"line 3: label 'neutral' in column 'label' is not one of \['entailment', 'not_entailment'\]"),
        ("cola", "CoLA/dev.tsv", ["s\t1\t\tfine", "s\t2\t\tbad label"],
         r"line 2: label '2' in column 'label' is not one of \['0', '1'\]"),
        ("stsb", "STS-B/dev.tsv", ["sentence1\tsentence2\tscore", "a\tb\t1.0", "a\tb\thigh"],
         r"line 3: score 'high' in column 'score' is not a number"),
        ("stsb", "STS-B/dev.tsv", ["sentence1\tsentence2\tscore", "a\tb\tnan"], r"line 2: score 'nan' is not finite"),
        ("rte", "RTE/dev.tsv", ["index\tpremise\thypothesis\tlabel"], r"no column \['sentence1', 'sentence2'\]"),
    ],
)
def test_malformed_rows_name_file_line_and_problem(tmp_path, task, file, lines, message):
    path = write(tmp_path, file, lines)
    with pytest.raises(ValueError, match=message) as error:
        load_split(task, "test", tmp_path)
    assert str(path) in str(error.value)


def test_missing_file_names_path_and_fix(tmp_path):
    (tmp_path / "SOURCES.md").write_text("what is here")
    with pytest.raises(FileNotFoundError) as error:
        load_split("qqp", "train", tmp_path)
    message = str(error.value)
    for part in (str(tmp_path / "QQP" / "train.tsv"), "SOURCES.md", "omit --data-dir", GLUE_DIR_ENV, "hub"):
        assert part in message


def test_missing_split_fails_only_when_used(tmp_path):
    write(tmp_path, "MNLI/dev_matched.tsv", ["sentence1\tsentence2\tgold_label", "P.\tH.\tcontradiction"])
    assert get_task("mnli").split_names == ("train", "test", "test_mismatched")
    assert load_split("mnli", "test", tmp_path).labels.tolist() == [2]  # no train file needed for that
    with pytest.raises(FileNotFoundError, match="mnli 'train' split not found"):
        load_split("mnli", "train", tmp_path)
    with pytest.raises(ValueError, match=r"mnli has no split 'dev'; choose one of \['train', 'test'"):
        load_split("mnli", "dev", tmp_path)


def test_env_var_is_used_when_no_data_dir(tmp_path, monkeypatch):
    write(tmp_path, "SST-2/dev.tsv", ["sentence\tlabel", "good film \t1"])
    monkeypatch.setenv(GLUE_DIR_ENV, str(tmp_path))
    assert load_split("sst2", "test").text_a == ["good film "]


def test_hub_is_used_without_local_dir(monkeypatch):
    requests = []

    def load_dataset(name, config, split):
        requests.append((name, config, split))
        return {"premise": ["P1", "P2"], "hypothesis": ["H1", "H2"], "label": [2, 0]}

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    split = load_split("mnli", "test_mismatched")
    assert requests == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert (split.text_a, split.text_b, split.labels.tolist()) == (["P1", "P2"], ["H1", "H2"], [2, 0])


def test_hub_errors_are_clear(monkeypatch):
    hidden = {"sentence": ["a"], "label": [-1]}
    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=lambda *a, **k: hidden))
    with pytest.raises(ValueError, match="label -1 is not a class id"):
        load_split("sst2", "test")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=offline))
    with pytest.raises(RuntimeError, match="no network.*pass --data-dir"):
        load_split("sst2", "train")


def test_read_tsv_split_labels_optional(tmp_path):
    labelled = read_tsv_split(write(tmp_path, "a.tsv", ["sentence\tlabel", "nice\t1"]), "sst2")
    assert labelled.labels.tolist() == [1]
    unlabelled = read_tsv_split(write(tmp_path, "b.tsv", ["index\tsentence", "0\tnice"]), "sst2")
    assert unlabelled.text_a == ["nice"] and unlabelled.labels is None
    cola = read_tsv_split(write(tmp_path, "c.tsv", ["s\t0\t*\tBad good."]), "cola")
    assert cola.labels.tolist() == [0]
    with pytest.raises(ValueError, match=r"no column \['sentence'\] in header \['nice', '1'\]"):
        read_tsv_split(write(tmp_path, "d.tsv", ["nice\t1"]), "sst2")
    with pytest.raises(FileNotFoundError, match="nope.tsv does not exist"):
        read_tsv_split(tmp_path / "nope.tsv", "sst2")


def test_split_validates_and_selects():
    split = Split([f"text {i}" for i in range(5)], None, np.arange(5, dtype=np.int64) % 2)
    picked = split.select([4, 0])
    assert picked.text_a == ["text 4", "text 0"] and picked.labels.tolist() == [0, 0] and len(picked) == 2
    with pytest.raises(ValueError, match="text_b has 1 entries but text_a has 2"):
        Split(["a", "b"], ["c"], None)
    with pytest.raises(ValueError, match="labels are float64"):
        Split(["a"], None, np.zeros(1))


# ---------------------------------------------------------------- the real local data


@pytest.mark.skipif(not LOCAL_GLUE.is_dir(), reason=f"no local GLUE data at {LOCAL_GLUE}")
def test_real_local_glue_files():
    """Row counts from ../shared/data/glue/SOURCES.md; every row there passes validation."""
    expected = {
        ("cola", "train"): 8551, ("cola", "test"): 1043,
        ("sst2", "train"): 67349, ("sst2", "test"): 872,
        ("mrpc", "train"): 3668, ("mrpc", "test"): 408,
        ("stsb", "train"): 5749, ("stsb", "test"): 1500,
        ("qnli", "test"): 5463,
        ("rte", "train"): 2490, ("rte", "test"): 277,
        ("mnli", "test"): 9815,
    }
    for (task, split_name), rows in expected.items():
        split = load_split(task, split_name, LOCAL_GLUE)
        assert len(split) == rows, (task, split_name)
        assert (split.text_b is None) == (task in ("cola", "sst2"))
    assert np.bincount(load_split("mnli", "test", LOCAL_GLUE).labels).tolist() == [3479, 3123, 3213]
    assert np.bincount(load_split("mrpc", "test", LOCAL_GLUE).labels).tolist() == [129, 279]
