"""GLUE: the task table, and its splits read from local tsv files or the Hugging Face hub.

The data comes from `data_dir`, else `$MINIPELT_GLUE_DIR`, else the hub (`nyu-mll/glue`, whose
validation split(s) are our test set(s): GLUE's test labels are hidden). A local directory has
the classic `download_glue_data.py` layout, `<dir>/<Task dir>/<file>.tsv`.

Local files are read strictly (tab-separated, no quoting: a `"` inside a sentence stays text),
every row checked: a bad row is an error naming file, line and problem, never a dropped
example. Columns are found by header name, so extra or reordered columns work too; CoLA's
files have no header, their columns are `Task.headerless_columns`.
"""
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HUB_DATASET = "nyu-mll/glue"
GLUE_DIR_ENV = "MINIPELT_GLUE_DIR"


@dataclass(frozen=True)
class Task:
    """One GLUE task. Class ids are positions in `label_names`, ordered as on the hub so that local
    and hub data give the same ids; `label_names` is None for STS-B (regression, one output)."""

    name: str  # our key and the hub's config name: "sst2"
    dir_name: str  # its directory in a GLUE data dir: "SST-2"
    text_columns: tuple[str, ...]  # one (single sentence) or two (pair) tsv header names
    label_column: str
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]  # what it reports (the paper, section 4.1), main metric first: metrics.METRICS
    hub_text_columns: tuple[str, ...] = ()  # where the hub names them otherwise
    test_files: dict[str, str] = field(default_factory=lambda: {"test": "dev.tsv"})  # GLUE's dev set is our test
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "test": "validation"})
    headerless_columns: tuple[str, ...] | None = None  # column names for files without a header

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def split_names(self) -> tuple[str, ...]:
        return ("train", *self.test_files)


PAIR, BINARY, NLI = ("sentence1", "sentence2"), ("0", "1"), ("entailment", "not_entailment")
ACCURACY, F1 = ("accuracy",), ("f1", "accuracy")
TASKS = {task.name: task for task in [
    Task(name="cola", dir_name="CoLA", text_columns=("sentence",), label_column="label", label_names=BINARY,
         metrics=("mcc",), headerless_columns=("source", "label", "original_label", "sentence")),
    Task(name="sst2", dir_name="SST-2", text_columns=("sentence",), label_column="label", label_names=BINARY,
         metrics=ACCURACY),
    Task(name="mrpc", dir_name="MRPC", text_columns=("#1 String", "#2 String"), label_column="Quality",
         label_names=BINARY, metrics=F1, hub_text_columns=PAIR),
    Task(name="stsb", dir_name="STS-B", text_columns=PAIR, label_column="score", label_names=None,
         metrics=("spearman", "pearson")),
    Task(name="qqp", dir_name="QQP", text_columns=("question1", "question2"), label_column="is_duplicate",
         label_names=BINARY, metrics=F1),
    Task(name="mnli", dir_name="MNLI", text_columns=PAIR, label_column="gold_label", metrics=ACCURACY,
         label_names=("entailment", "neutral", "contradiction"), hub_text_columns=("premise", "hypothesis"),
         test_files={"test": "dev_matched.tsv", "test_mismatched": "dev_mismatched.tsv"},
         hub_splits={"train": "train", "test": "validation_matched", "test_mismatched": "validation_mismatched"}),
    Task(name="qnli", dir_name="QNLI", text_columns=("question", "sentence"), label_column="label",
         label_names=NLI, metrics=ACCURACY),
    Task(name="rte", dir_name="RTE", text_columns=PAIR, label_column="label", label_names=NLI, metrics=ACCURACY),
]}


def get_task(name: str) -> Task:
    """The task called `name` (case-insensitive), or an error listing the valid names."""
    if name.lower() not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name.lower()]


@dataclass(frozen=True, eq=False)  # numpy labels make field-wise == ambiguous
class Split:
    """Examples in columns: texts, second texts (pair tasks, else None), and labels: int64 class ids,
    float32 scores (STS-B), or None for a file read without a label column (predict only)."""

    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray | None

    def __post_init__(self):
        n = len(self.text_a)
        if self.text_b is not None and len(self.text_b) != n:
            raise ValueError(f"text_b has {len(self.text_b)} entries but text_a has {n}; give one per example")
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"labels have shape {self.labels.shape}, expected ({n},): one per example")
        if self.labels is not None and self.labels.dtype not in (np.int64, np.float32):
            raise ValueError(f"labels are {self.labels.dtype}; use int64 class ids or float32 scores")

    def __len__(self) -> int:
        return len(self.text_a)

    def select(self, indices) -> "Split":
        """The examples at the given integer positions, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        pick = (lambda column: None if column is None else [column[i] for i in idx])
        return Split(pick(self.text_a), pick(self.text_b), None if self.labels is None else self.labels[idx])


# ---------------------------------------------------------------- reading tsv files


def parse_label(value: str, task: Task, where: str) -> int | float:
    if task.is_regression:
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


def read_tsv(path: Path, task: Task, has_header: bool | None, need_label: bool) -> Split:
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
    columns, first_line = (rows[0], 2) if has_header else (list(task.headerless_columns), 1)
    wanted = list(task.text_columns) + ([task.label_column] if need_label else [])
    if missing := [c for c in wanted if c not in columns]:
        raise ValueError(f"{path}: no column {missing} in header {columns}; a {task.name} file needs the "
                         f"columns {wanted} (the GLUE {task.dir_name} layout)")
    text_positions = [columns.index(c) for c in task.text_columns]
    label_position = columns.index(task.label_column) if task.label_column in columns else None
    texts, labels = [[] for _ in text_positions], []
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
            labels.append(parse_label(row[label_position], task, where))
    dtype = np.float32 if task.is_regression else np.int64
    return Split(texts[0], texts[1] if len(texts) == 2 else None,
                 None if label_position is None else np.array(labels, dtype=dtype))


def read_tsv_split(path: str | Path, task_name: str) -> Split:
    """Your own tsv in the task's GLUE layout, validated as GLUE files are: a header naming the task's
    text columns (or CoLA's headerless layout); without a label column `labels` is None (predict only)."""
    task, path = get_task(task_name), Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the path of a tsv file in the {task.dir_name} layout")
    return read_tsv(path, task, has_header=None, need_label=False)


# ---------------------------------------------------------------- loading GLUE splits


def load_hub_split(task: Task, split_name: str) -> Split:
    import datasets  # heavy import, needed only without local data

    where = f"{HUB_DATASET} config {task.name!r} split {task.hub_splits[split_name]!r}"
    try:
        table = datasets.load_dataset(HUB_DATASET, task.name, split=task.hub_splits[split_name])
    except Exception as e:  # datasets raises many types (network, cache, auth); all mean the same here
        raise RuntimeError(f"could not load {where} from the Hugging Face hub ({e}); without network, pass "
                           f"--data-dir (or set {GLUE_DIR_ENV}) to a local GLUE directory") from e
    columns = task.hub_text_columns or task.text_columns
    texts = [list(table[c]) for c in columns]
    for column, values in zip(columns, texts):
        if empty := [i for i, text in enumerate(values) if not text or not text.strip()]:
            raise ValueError(f"{where}, example {empty[0]}: empty text in column {column!r}")
    labels = np.asarray(list(table["label"]), dtype=np.float32 if task.is_regression else np.int64)
    if not task.is_regression and len(bad := np.flatnonzero((labels < 0) | (labels >= task.num_labels))):
        raise ValueError(f"{where}, example {bad[0]}: label {labels[bad[0]]} is not a class id in "
                         f"[0, {task.num_labels}); hidden-label test splits cannot be used for evaluation")
    return Split(texts[0], texts[1] if len(texts) == 2 else None, labels)


def load_split(task_name: str, split_name: str, data_dir: str | Path | None = None) -> Split:
    """One split ("train" or a name in `Task.test_files`) from the local directory or the hub."""
    task = get_task(task_name)
    if split_name not in task.split_names:
        raise ValueError(f"{task.name} has no split {split_name!r}; choose one of {list(task.split_names)}")
    root, chosen_by = (data_dir, "--data-dir") if data_dir is not None else (os.environ.get(GLUE_DIR_ENV), GLUE_DIR_ENV)
    if not root:
        return load_hub_split(task, split_name)
    root = Path(root)
    path = root / task.dir_name / ("train.tsv" if split_name == "train" else task.test_files[split_name])
    if not path.is_file():
        listed = f" ({root / 'SOURCES.md'} lists the files there)" if (root / "SOURCES.md").is_file() else ""
        raise FileNotFoundError(
            f"{task.name} {split_name!r} split not found: {path} does not exist; the directory {root} came from "
            f"{chosen_by}{listed}. Put the GLUE file there, or omit --data-dir and unset {GLUE_DIR_ENV} to load "
            f"{task.name} from the Hugging Face hub ({HUB_DATASET})")
    return read_tsv(path, task, has_header=task.headerless_columns is None, need_label=True)
