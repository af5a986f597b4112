"""Data loading, validation, the few-shot protocol, encoding cache and batching.

Most tests write tiny GLUE-layout tsv files into tmp_path; one reads the real local data
in ../shared/data/glue (the repo root's sibling) if it is there.
"""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minipelt import data
from minipelt.data import (
    GLUE_DIR_ENV,
    TASKS,
    EncodedSplit,
    Split,
    batches,
    encode_split,
    few_shot,
    few_shot_indices,
    get_task,
    load_split,
    load_task,
    num_batches,
    read_tsv_split,
)
from minipelt.metrics import TASK_METRICS

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
    assert set(TASKS) == set(TASK_METRICS)
    for name, task in TASKS.items():
        assert task.main_metric == TASK_METRICS[name][0]
        assert set(task.hub_splits) == set(task.split_names)
        assert len(task.text_columns) == len(task.hub_text_columns) in (1, 2)
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
    splits = load_task("mnli", tmp_path)
    assert list(splits) == ["train", "test", "test_mismatched"]
    assert splits["test"].labels.tolist() == [2]
    with pytest.raises(FileNotFoundError, match="mnli 'train' split not found"):
        splits["train"]
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


# ---------------------------------------------------------------- splits and the few-shot protocol


def make_split(n: int) -> Split:
    return Split([f"text {i}" for i in range(n)], None, np.arange(n, dtype=np.int64) % 2)


def test_split_validates_and_selects():
    split = make_split(5)
    picked = split.select([4, 0])
    assert picked.text_a == ["text 4", "text 0"] and picked.labels.tolist() == [0, 0] and len(picked) == 2
    with pytest.raises(ValueError, match="text_b has 1 entries but text_a has 2"):
        Split(["a", "b"], ["c"], None)
    with pytest.raises(ValueError, match="labels are float64"):
        Split(["a"], None, np.zeros(1))


def test_few_shot_protocol():
    train, dev = few_shot(make_split(1500), k=100, seed=3)
    assert len(train) == 100 and len(dev) == 1000
    assert not set(train.text_a) & set(dev.text_a)
    again_train, again_dev = few_shot(make_split(1500), k=100, seed=3)
    assert again_train.text_a == train.text_a and again_dev.text_a == dev.text_a
    assert few_shot(make_split(1500), k=100, seed=4)[0].text_a != train.text_a
    # the protocol's definition: first K of the seed's permutation train, the next 1000 dev
    order = np.random.default_rng(3).permutation(1500)
    assert train.text_a == [f"text {i}" for i in order[:100]]
    assert dev.text_a == [f"text {i}" for i in order[100:1100]]


def test_few_shot_full_and_errors():
    train_idx, dev_idx = few_shot_indices(1500, None, seed=0)
    assert len(train_idx) == 500 and len(dev_idx) == 1000
    assert sorted(np.concatenate([train_idx, dev_idx]).tolist()) == list(range(1500))
    with pytest.raises(ValueError, match="K=1000 train \\+ 1000 dev examples = 2000, but the training set has only "
                                         "1500; use --k 500 or less"):
        few_shot_indices(1500, 1000, seed=0)
    with pytest.raises(ValueError, match="k must be a positive"):
        few_shot_indices(1500, 0, seed=0)
    with pytest.raises(ValueError, match="full training needs more than the 1000 dev examples"):
        few_shot_indices(1000, None, seed=0)


# ---------------------------------------------------------------- encoding and batching


class WordTokenizer:
    """A stand-in with the real tokenizer's interface: [CLS]=1 words [SEP]=2 (words [SEP]), truncated."""

    fingerprint = "words-v1"

    def __init__(self):
        self.calls = 0

    def encode(self, texts_a, texts_b, max_length):
        self.calls += 1
        out = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        for i, a in enumerate(texts_a):
            ids = [1] + [3 + len(w) for w in a.split()] + [2]
            types = [0] * len(ids)
            if texts_b is not None:
                second = [3 + len(w) for w in texts_b[i].split()] + [2]
                ids, types = ids + second, types + [1] * len(second)
            out["input_ids"].append(ids[:max_length])
            out["token_type_ids"].append(types[:max_length])
            out["attention_mask"].append([1] * len(ids[:max_length]))
        return out


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(data, "_ENCODED", {})


def test_encoding_is_cached_and_selection_reuses_it(fresh_cache):
    tokenizer = WordTokenizer()
    split = Split(["a bb", "ccc", "d"], ["x", "yy zz", "w"], np.array([0, 1, 0]))
    first = encode_split(split, tokenizer, max_length=8)
    second = encode_split(split, tokenizer, max_length=8)
    assert tokenizer.calls == 1 and second.input_ids is first.input_ids
    assert first.input_ids[0] == [1, 4, 5, 2, 4, 2] and first.token_type_ids[0] == [0, 0, 0, 0, 1, 1]
    assert encode_split(split, tokenizer, max_length=3).input_ids[0] == [1, 4, 5]
    assert tokenizer.calls == 2  # another max length is another encoding
    # encoding then selecting equals selecting then encoding
    selected, reencoded = first.select([2, 0]), encode_split(split.select([2, 0]), tokenizer, 8)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert getattr(selected, name) == getattr(reencoded, name)
    assert selected.labels.tolist() == reencoded.labels.tolist() == [0, 0]


def test_tokenizer_breaking_interface_is_caught(fresh_cache):
    tokenizer = SimpleNamespace(fingerprint="broken", encode=lambda a, b, m: {"input_ids": [[1]]})
    with pytest.raises(ValueError, match=r"returned no \['token_type_ids', 'attention_mask'\]"):
        encode_split(make_split(1), tokenizer, 8)


def encoded_from_lengths(lengths: list[int], regression: bool = False) -> EncodedSplit:
    ids = [[10 * i + t + 1 for t in range(n)] for i, n in enumerate(lengths)]
    labels = np.arange(len(lengths), dtype=np.float32 if regression else np.int64)
    return EncodedSplit(ids, [[t % 2 for t in range(n)] for n in lengths], [[1] * n for n in lengths], labels)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), max_size=30), st.integers(1, 8), st.booleans(), st.booleans())
def test_batches_pad_to_longest_and_cover_every_example(lengths, batch_size, shuffle, regression):
    encoded = encoded_from_lengths(lengths, regression)
    generator = torch.Generator().manual_seed(0)
    seen = []
    produced = list(batches(encoded, batch_size, shuffle, generator))
    assert len(produced) == num_batches(len(lengths), batch_size)
    for batch in produced:
        rows = batch["labels"].long().tolist()  # labels equal the example's position
        longest = max(lengths[i] for i in rows)
        assert batch["input_ids"].shape == (len(rows), longest)
        assert batch["labels"].dtype == (torch.float32 if regression else torch.int64)
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            assert batch[name].dtype == torch.int64 and batch[name].shape == (len(rows), longest)
        for row, i in enumerate(rows):
            n = lengths[i]
            assert batch["input_ids"][row, :n].tolist() == encoded.input_ids[i]
            assert batch["token_type_ids"][row, :n].tolist() == encoded.token_type_ids[i]
            assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (longest - n)
            assert not batch["input_ids"][row, n:].any() and not batch["token_type_ids"][row, n:].any()
        seen += rows
    assert sorted(seen) == list(range(len(lengths)))
    if not shuffle:
        assert seen == list(range(len(lengths)))


def test_shuffled_batches_are_deterministic_given_the_generator():
    encoded = encoded_from_lengths([3] * 50)

    def order(seed):
        return [b["labels"].tolist() for b in batches(encoded, 7, True, torch.Generator().manual_seed(seed))]

    assert order(1) == order(1) and order(1) != order(2)


def test_batches_edge_cases():
    assert list(batches(encoded_from_lengths([]), 4, shuffle=True)) == []
    unlabelled = EncodedSplit([[1, 2]], [[0, 0]], [[1, 1]], None)
    assert "labels" not in next(batches(unlabelled, 4, shuffle=False))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(batches(unlabelled, 0, shuffle=False))


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
