"""GLUE data: the task table, validated loading, the few-shot protocol, and batching.

Where the data comes from, in order: the `data_dir` argument, the `MINIPELT_GLUE_DIR`
environment variable, else the Hugging Face hub (`nyu-mll/glue`, whose validation
split(s) become our test set(s), since GLUE's own test labels are hidden). A local
directory uses the classic `download_glue_data.py` layout, `<dir>/<Task dir>/<file>.tsv`.

Local files are read strictly (tab-separated, no quoting, so a `"` inside a sentence stays
text) and every row is checked; a bad row is an error naming file, line and problem
rather than a silently dropped example. Columns are found by header name, so a file with
extra or reordered columns also works (e.g. an MNLI dev file holding only
`sentence1 sentence2 gold_label`). CoLA's files have no header; their columns are named
by `Task.headerless_columns`.

Each split is read only when asked for, so a task whose training file is absent locally
(MNLI, QNLI, QQP in ../shared/data/glue) can still be evaluated on its test file.

Few-shot protocol (UniPELT section 4.1): permute the training set with the data seed,
take the first K examples to train and the next `dev_size` (1000) as the dev set for
checkpoint selection; the GLUE dev set is the test set. `k=None` ("full") keeps the first
`dev_size` of the permutation as dev and trains on all the rest.

Tokenising happens once per distinct set of texts, tokenizer and max length (an in-memory
cache), on the whole training file; few-shot subsets are then index selections of the
encoded file, so every seed and K reuses one tokenisation. Batches are padded only to
their own longest sequence.
"""
import csv
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

HUB_DATASET = "nyu-mll/glue"
GLUE_DIR_ENV = "MINIPELT_GLUE_DIR"


@dataclass(frozen=True)
class Task:
    """One GLUE task: where its files are, which columns hold text and label, how it is scored.

    Class ids are positions in `label_names`, ordered as on the hub so that local and hub
    data give the same ids. `label_names` is None for STS-B (regression, one output).
    """

    name: str  # our key, also the metrics key: "sst2"
    dir_name: str  # directory in a GLUE data dir: "SST-2"
    train_file: str
    test_files: dict[str, str]  # our test split name -> file; GLUE's dev set is our test set
    text_columns: tuple[str, ...]  # one (single sentence) or two (pair) tsv header names
    label_column: str
    label_names: tuple[str, ...] | None
    main_metric: str  # a key of metrics.compute_metrics(name, ...)
    hub_config: str
    hub_text_columns: tuple[str, ...]
    hub_splits: dict[str, str]  # our split name -> hub split name
    headerless_columns: tuple[str, ...] | None = None  # column names for files without a header

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.label_names is not None else 1

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def split_names(self) -> tuple[str, ...]:
        return ("train", *self.test_files)

    def file_for(self, split_name: str) -> str:
        return self.train_file if split_name == "train" else self.test_files[split_name]


_BINARY = ("0", "1")
_PAIR = ("sentence1", "sentence2")
_ONE_TEST = {"train": "train", "test": "validation"}

TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task("cola", "CoLA", "train.tsv", {"test": "dev.tsv"}, ("sentence",), "label", _BINARY,
             "mcc", "cola", ("sentence",), _ONE_TEST,
             headerless_columns=("source", "label", "original_label", "sentence")),
        Task("sst2", "SST-2", "train.tsv", {"test": "dev.tsv"}, ("sentence",), "label", _BINARY,
             "accuracy", "sst2", ("sentence",), _ONE_TEST),
        Task("mrpc", "MRPC", "train.tsv", {"test": "dev.tsv"}, ("#1 String", "#2 String"), "Quality", _BINARY,
             "f1", "mrpc", _PAIR, _ONE_TEST),
        Task("stsb", "STS-B", "train.tsv", {"test": "dev.tsv"}, _PAIR, "score", None,
             "spearman", "stsb", _PAIR, _ONE_TEST),
        Task("qqp", "QQP", "train.tsv", {"test": "dev.tsv"}, ("question1", "question2"), "is_duplicate", _BINARY,
             "f1", "qqp", ("question1", "question2"), _ONE_TEST),
        Task("mnli", "MNLI", "train.tsv", {"test": "dev_matched.tsv", "test_mismatched": "dev_mismatched.tsv"},
             _PAIR, "gold_label", ("entailment", "neutral", "contradiction"),
             "accuracy", "mnli", ("premise", "hypothesis"),
             {"train": "train", "test": "validation_matched", "test_mismatched": "validation_mismatched"}),
        Task("qnli", "QNLI", "train.tsv", {"test": "dev.tsv"}, ("question", "sentence"), "label",
             ("entailment", "not_entailment"), "accuracy", "qnli", ("question", "sentence"), _ONE_TEST),
        Task("rte", "RTE", "train.tsv", {"test": "dev.tsv"}, _PAIR, "label", ("entailment", "not_entailment"),
             "accuracy", "rte", _PAIR, _ONE_TEST),
    ]
}


def get_task(name: str) -> Task:
    """The task called `name` (case-insensitive), or an error listing the valid names."""
    task = TASKS.get(name.lower())
    if task is None:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of: {', '.join(TASKS)}")
    return task


@dataclass(frozen=True, eq=False)  # numpy labels make field-wise == ambiguous
class Split:
    """Examples in columns: texts, optional second texts (pair tasks), and labels.

    labels are int64 class ids, float32 scores (STS-B), or None for a predict-only file
    read by `read_tsv_split` without a label column.
    """

    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray | None

    def __post_init__(self):
        n = len(self.text_a)
        if self.text_b is not None and len(self.text_b) != n:
            raise ValueError(f"text_b has {len(self.text_b)} entries but text_a has {n}; give one per example")
        if self.labels is not None:
            if self.labels.shape != (n,):
                raise ValueError(f"labels have shape {self.labels.shape}, expected ({n},): one per example")
            if self.labels.dtype not in (np.int64, np.float32):
                raise ValueError(f"labels are {self.labels.dtype}; use int64 class ids or float32 scores")

    def __len__(self) -> int:
        return len(self.text_a)

    def select(self, indices) -> "Split":
        """The examples at the given integer positions, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return Split(
            [self.text_a[i] for i in idx],
            None if self.text_b is None else [self.text_b[i] for i in idx],
            None if self.labels is None else self.labels[idx],
        )


# ---------------------------------------------------------------- reading tsv files


def _parse_label(value: str, task: Task, where: str) -> int | float:
    if task.label_names is None:
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"{where}: score {value!r} in column {task.label_column!r} is not a number; "
                             "fix or remove the row") from None
        if not np.isfinite(score):
            raise ValueError(f"{where}: score {value!r} is not finite; fix or remove the row")
        return score
    if value not in task.label_names:
        raise ValueError(f"{where}: label {value!r} in column {task.label_column!r} is not one of "
                         f"{list(task.label_names)}; fix or remove the row")
    return task.label_names.index(value)


def _column_positions(columns: list[str], task: Task, path: Path, need_label: bool) -> tuple[list[int], int | None]:
    """Where the text and label columns are; the label position is None if absent and not needed."""
    wanted = list(task.text_columns) + ([task.label_column] if need_label else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"{path}: no column {missing} in header {columns}; a {task.name} file needs the "
                         f"columns {wanted} (the GLUE {task.dir_name} layout)")
    label = columns.index(task.label_column) if task.label_column in columns else None
    return [columns.index(c) for c in task.text_columns], label


def _read_tsv(path: Path, task: Task, has_header: bool | None, need_label: bool) -> Split:
    """Read and validate one tsv; has_header None means: a header if its first row names the text columns."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig drops MRPC's byte-order mark
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            rows = list(reader)
        except csv.Error as e:
            raise ValueError(f"{path}, line {reader.line_num}: unreadable tsv row ({e})") from None
    if not rows:
        raise ValueError(f"{path} is empty; expected a {task.name} tsv file")
    if has_header is None:
        has_header = all(c in rows[0] for c in task.text_columns) or task.headerless_columns is None
    if has_header:
        columns, first_line = rows[0], 2
    else:
        columns, first_line = list(task.headerless_columns), 1
    text_positions, label_position = _column_positions(columns, task, path, need_label)
    texts: list[list[str]] = [[] for _ in text_positions]
    labels = []
    for line, row in enumerate(rows[first_line - 1:], start=first_line):
        where = f"{path}, line {line}"
        if len(row) != len(columns):
            raise ValueError(f"{where}: {len(row)} tab-separated columns, expected {len(columns)} {columns}; "
                             "a tab inside a text, or a truncated row?")
        for column, position in zip(texts, text_positions):
            if not row[position].strip():
                raise ValueError(f"{where}: empty text in column {columns[position]!r}; fill it in or remove the row")
            column.append(row[position])
        if label_position is not None:
            labels.append(_parse_label(row[label_position], task, where))
    dtype = np.float32 if task.is_regression else np.int64
    return Split(texts[0], texts[1] if len(texts) == 2 else None,
                 np.array(labels, dtype=dtype) if label_position is not None else None)


def read_tsv_split(path: str | Path, task_name: str) -> Split:
    """Read your own tsv in the task's GLUE layout, e.g. to evaluate or predict on it.

    The file needs a header naming the task's text columns (`get_task(name).text_columns`),
    except for CoLA, whose headerless GLUE layout is also accepted. The label column is
    optional: without it `labels` is None (predict only). Rows are validated as for GLUE files.
    """
    task, path = get_task(task_name), Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the path of a tsv file in the {task.dir_name} layout")
    return _read_tsv(path, task, has_header=None, need_label=False)


# ---------------------------------------------------------------- loading GLUE splits


def _glue_dir(data_dir: str | Path | None) -> tuple[Path | None, str]:
    """The local data directory (None: use the hub) and how it was chosen, for error messages."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    if os.environ.get(GLUE_DIR_ENV):
        return Path(os.environ[GLUE_DIR_ENV]), GLUE_DIR_ENV
    return None, "hub"


def _load_hub_split(task: Task, split_name: str) -> Split:
    import datasets  # heavy import, needed only without local data

    hub_split = task.hub_splits[split_name]
    where = f"{HUB_DATASET} config {task.hub_config!r} split {hub_split!r}"
    try:
        table = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
    except Exception as e:  # datasets raises many types (network, cache, auth); all mean the same here
        raise RuntimeError(f"could not load {where} from the Hugging Face hub ({e}); without network, pass "
                           f"--data-dir (or set {GLUE_DIR_ENV}) to a local GLUE directory") from e
    texts = [list(table[c]) for c in task.hub_text_columns]
    for column, values in zip(task.hub_text_columns, texts):
        for i, text in enumerate(values):
            if not text or not text.strip():
                raise ValueError(f"{where}, example {i}: empty text in column {column!r}")
    if task.is_regression:
        labels = np.asarray(list(table["label"]), dtype=np.float32)
    else:
        labels = np.asarray(list(table["label"]), dtype=np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= task.num_labels))
        if len(bad):
            raise ValueError(f"{where}, example {bad[0]}: label {labels[bad[0]]} is not a class id in "
                             f"[0, {task.num_labels}); hidden-label test splits cannot be used for evaluation")
    return Split(texts[0], texts[1] if len(texts) == 2 else None, labels)


def load_split(task_name: str, split_name: str, data_dir: str | Path | None = None) -> Split:
    """One split ("train" or a name in `Task.test_files`) from the local directory or the hub."""
    task = get_task(task_name)
    if split_name not in task.split_names:
        raise ValueError(f"{task.name} has no split {split_name!r}; choose one of {list(task.split_names)}")
    root, chosen_by = _glue_dir(data_dir)
    if root is None:
        return _load_hub_split(task, split_name)
    path = root / task.dir_name / task.file_for(split_name)
    if not path.is_file():
        sources = root / "SOURCES.md"
        listed = f" ({sources} lists the files there)" if sources.is_file() else ""
        raise FileNotFoundError(
            f"{task.name} {split_name!r} split not found: {path} does not exist; the directory {root} came from "
            f"{chosen_by}{listed}. Put the GLUE file there, or omit --data-dir and unset {GLUE_DIR_ENV} to load "
            f"{task.name} from the Hugging Face hub ({HUB_DATASET})"
        )
    return _read_tsv(path, task, has_header=task.headerless_columns is None, need_label=True)


class TaskSplits(Mapping[str, Split]):
    """A task's splits by name ("train", "test", ...), each loaded on first access and kept."""

    def __init__(self, task_name: str, data_dir: str | Path | None):
        self.task = get_task(task_name)
        self._data_dir = data_dir
        self._loaded: dict[str, Split] = {}

    def __getitem__(self, split_name: str) -> Split:
        if split_name not in self._loaded:
            self._loaded[split_name] = load_split(self.task.name, split_name, self._data_dir)
        return self._loaded[split_name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.task.split_names)

    def __len__(self) -> int:
        return len(self.task.split_names)


def load_task(task_name: str, data_dir: str | Path | None = None) -> TaskSplits:
    """All splits of a task, lazily: a missing file is an error only when its split is used."""
    return TaskSplits(task_name, data_dir)


# ---------------------------------------------------------------- few-shot protocol


class _Selectable(Protocol):
    def __len__(self) -> int: ...
    def select(self, indices): ...


_SplitT = TypeVar("_SplitT", bound=_Selectable)


def parse_k(value: str) -> int | None:
    """A --k value: a number of training examples, or 'full' (None) for the whole training set."""
    return None if value == "full" else int(value)


def few_shot_indices(n: int, k: int | None, seed: int, dev_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) positions in a training set of n examples; see the module docstring."""
    if k is not None and k < 1:
        raise ValueError(f"k must be a positive number of training examples or None for full, got {k}")
    order = np.random.default_rng(seed).permutation(n)
    if k is None:
        if dev_size >= n:
            raise ValueError(f"full training needs more than the {dev_size} dev examples, but the training set "
                             f"has only {n}; use a smaller dev_size")
        return order[dev_size:], order[:dev_size]
    if k + dev_size > n:
        fix = f"use --k {n - dev_size} or less" if n > dev_size else "use a smaller dev_size"
        raise ValueError(f"K={k} train + {dev_size} dev examples = {k + dev_size}, but the training set has "
                         f"only {n}; {fix}")
    return order[:k], order[k:k + dev_size]


def few_shot(train: _SplitT, k: int | None, seed: int, dev_size: int = 1000) -> tuple[_SplitT, _SplitT]:
    """Split a training set (a Split or an EncodedSplit) into the seed's few-shot train and dev sets."""
    train_idx, dev_idx = few_shot_indices(len(train), k, seed, dev_size)
    return train.select(train_idx), train.select(dev_idx)


# ---------------------------------------------------------------- tokenising and batching


class PairTokenizer(Protocol):
    """What encode_split needs: unpadded, truncated ids, and a string naming vocab and settings."""

    fingerprint: str

    def encode(self, texts_a: list[str], texts_b: list[str] | None, max_length: int) -> dict[str, list[list[int]]]: ...


@dataclass(frozen=True, eq=False)  # numpy labels make field-wise == ambiguous
class EncodedSplit:
    """Tokenised examples, unpadded (one list of ids per example), with their labels. Do not mutate the lists."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    attention_mask: list[list[int]]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, indices) -> "EncodedSplit":
        """The examples at the given integer positions, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return EncodedSplit(
            [self.input_ids[i] for i in idx],
            [self.token_type_ids[i] for i in idx],
            [self.attention_mask[i] for i in idx],
            None if self.labels is None else self.labels[idx],
        )


_ENCODED: dict[tuple[str, str, int], tuple[list[list[int]], list[list[int]], list[list[int]]]] = {}
_ENCODED_KEYS = ("input_ids", "token_type_ids", "attention_mask")


def _texts_digest(split: Split) -> str:
    return hashlib.sha256(json.dumps([split.text_a, split.text_b]).encode()).hexdigest()


def _check_encoding(encoded: dict, n: int, max_length: int) -> None:
    """Catch a tokenizer that breaks the interface here, not as a shape error deep in the model."""
    missing = [key for key in _ENCODED_KEYS if key not in encoded]
    if missing:
        raise ValueError(f"tokenizer.encode returned no {missing}; it must return {list(_ENCODED_KEYS)}")
    for key in _ENCODED_KEYS:
        if len(encoded[key]) != n:
            raise ValueError(f"tokenizer.encode returned {len(encoded[key])} {key} for {n} examples")
    for i, (ids, types, mask) in enumerate(zip(*(encoded[key] for key in _ENCODED_KEYS))):
        if not len(ids) == len(types) == len(mask) or len(ids) > max_length:
            raise ValueError(f"tokenizer.encode example {i}: lengths {len(ids)}/{len(types)}/{len(mask)} must be "
                             f"equal and at most max_length={max_length}")


def encode_split(split: Split, tokenizer: PairTokenizer, max_length: int) -> EncodedSplit:
    """Tokenise a split, reusing an earlier result for the same texts, tokenizer and max_length."""
    key = (_texts_digest(split), tokenizer.fingerprint, max_length)
    if key not in _ENCODED:
        if len(split) == 0:
            encoded = {name: [] for name in _ENCODED_KEYS}
        else:
            encoded = tokenizer.encode(split.text_a, split.text_b, max_length)
            _check_encoding(encoded, len(split), max_length)
        _ENCODED[key] = tuple(encoded[name] for name in _ENCODED_KEYS)
    return EncodedSplit(*_ENCODED[key], labels=split.labels)


def num_batches(n: int, batch_size: int) -> int:
    """How many batches `batches` yields for n examples (the last one may be smaller)."""
    return -(-n // batch_size)


def _collate(encoded: EncodedSplit, idx: list[int]) -> dict[str, torch.Tensor]:
    longest = max(len(encoded.input_ids[i]) for i in idx)
    batch = {}
    for name in _ENCODED_KEYS:
        padded = np.zeros((len(idx), longest), dtype=np.int64)  # pad id, type and mask are all 0
        for row, i in enumerate(idx):
            values = getattr(encoded, name)[i]
            padded[row, :len(values)] = values
        batch[name] = torch.from_numpy(padded)
    if encoded.labels is not None:
        batch["labels"] = torch.from_numpy(encoded.labels[idx])
    return batch


def batches(encoded: EncodedSplit, batch_size: int, shuffle: bool,
            generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """(B, T) int64 input_ids, token_type_ids, attention_mask, padded per batch, and labels if known.

    With shuffle, the order comes from `generator` (torch's global RNG if None), so a seeded
    generator gives the same batches every run. Labels keep their dtype: int64 or float32.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(encoded)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    for start in range(0, n, batch_size):
        yield _collate(encoded, order[start:start + batch_size])
