"""Your own data: CSV, TSV or JSON lines files in place of a GLUE task.

    python train.py --train-file reviews.csv --test-file reviews_test.csv --text-columns text --k 100

A run on files is a `FileTask`: a glue.Task whose splits come from the files (`train`, the
optional `dev`, and `test`), read into the same `Split`s as GLUE's, so the trainer, the
few-shot protocol and evaluation treat both alike. The file type comes from its extension:

    .csv            comma-separated, a header row, standard quoting ("a, b" is one field)
    .tsv            the same with tabs
    .jsonl, .json   JSON lines: one object per line, {"text": "...", "label": "positive"}

`--text-columns` names one (single texts) or two (pairs) text columns, `--label-column` the
label. Classification labels are strings or integers; the run records them as `labels` (class
id = position, by default the train file's labels sorted, integers by value), so the test
file, eval.py's --file and the class names it prints all use the run's mapping. With
`--regression` the labels are numbers (scores) and the head has one output.

Every row is checked: a missing column, an empty file or text, a label outside the recorded
set or labels mixing integers and strings is an error naming the file, the line and the fix.
"""
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minipelt.data.glue import Split, Task, get_task, load_split, parse_label, read_tsv_split

READERS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}  # extension -> csv delimiter (None: JSON lines)
CLASSIFICATION_METRICS, REGRESSION_METRICS = ("accuracy",), ("spearman", "pearson")


@dataclass(frozen=True)
class FileTask(Task):
    """A task on your own files: `files` maps a split name (train, dev, test) to its path."""

    files: dict[str, str] = field(default_factory=dict)

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self.files)


def read_records(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The column names and the (line number, {column: value}) rows of a CSV, TSV or JSON lines file."""
    if path.suffix.lower() not in READERS:
        raise ValueError(f"{path}: unknown file type {path.suffix or '(no extension)'!r}; name it .csv, .tsv or "
                         f".jsonl (JSON lines)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the path of a .csv, .tsv or .jsonl file")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{path} is empty; it needs a header (or JSON objects) and at least one example")
    delimiter = READERS[path.suffix.lower()]
    if delimiter is None:
        return read_json_lines(path, text)
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    try:  # line_num: the file line where a row ends (a quoted text may hold line breaks)
        (_, columns), *rows = [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise ValueError(f"{path}, line {reader.line_num}: unreadable row ({e})") from None
    separator = "tab" if delimiter == "\t" else "comma"
    records = []
    for line, row in rows:
        if row and len(row) != len(columns):
            raise ValueError(f"{path}, line {line}: {len(row)} fields, expected {len(columns)} {columns}; a "
                             f"{separator} inside an unquoted text?")
        if row:  # a blank line is no example
            records.append((line, dict(zip(columns, row))))
    return columns, records


def read_json_lines(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict]]]:
    columns, records = {}, []  # a dict keeps the columns in order of appearance
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {line}: not JSON ({e.msg}); a JSON lines file has one object per "
                             f"line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {line}: a JSON {type(record).__name__}, expected an object "
                             '{"column": value, ...}')
        columns.update(dict.fromkeys(record))
        records.append((line, record))
    return list(columns), records


def is_integer(value) -> bool:
    """An integer label: a JSON int, or a text such as '3' or '-1'."""
    if isinstance(value, str):
        return value.strip().lstrip("-").isdigit()
    return isinstance(value, int) and not isinstance(value, bool)


def label_text(value, where: str) -> str:
    """A class label as the run records it: a string ('positive', '1')."""
    if isinstance(value, str) or is_integer(value):
        return str(value).strip()
    raise ValueError(f"{where}: label {value!r} is a {type(value).__name__}; a class label is a string or an "
                     f"integer (for numbers to predict, pass --regression)")


def read_file(path: str | Path, task: Task, need_label: bool = True) -> Split:
    """Read one of your files with the task's columns and labels; without need_label a file lacking the
    label column gives labels None (predict only)."""
    path = Path(path)
    columns, records = read_records(path)
    if not records:
        raise ValueError(f"{path} has a header but no examples; add rows")
    wanted = list(task.text_columns) + ([task.label_column] if need_label else [])
    if missing := [c for c in wanted if c not in columns]:
        raise ValueError(f"{path}: no column {missing[0]!r} (its columns: {columns}); name the text columns "
                         f"with --text-columns and the label with --label-column")
    used = list(task.text_columns) + ([task.label_column] if task.label_column in columns else [])
    texts = [[] for _ in task.text_columns]
    for line, record in records:  # a JSON line may lack a key that others have
        if absent := [c for c in used if c not in record]:
            raise ValueError(f"{path}, line {line}: no {absent[0]!r}; give every example all of {used}")
        for column, values in zip(task.text_columns, texts):
            value = record[column]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path}, line {line}: column {column!r} holds {value!r}, not a text; fill it "
                                 f"in or remove the row")
            values.append(value)
    labels = parse_labels(path, task, records) if task.label_column in columns else None
    return Split(texts[0], texts[1] if len(texts) == 2 else None, labels)


def parse_labels(path: Path, task: Task, records: list[tuple[int, dict]]):
    """Class ids in task.label_names (int64), or scores (float32) for regression."""
    values = [(f"{path}, line {line}", record[task.label_column]) for line, record in records]
    if task.is_regression:
        scores = [parse_label(str(v) if not isinstance(v, bool) else "", task, where) for where, v in values]
        return np.array(scores, dtype=np.float32)
    check_one_kind(path, values)
    ids = []
    for where, value in values:
        text = label_text(value, where)
        if text not in task.label_names:
            raise ValueError(f"{where}: label {text!r} is not one of the run's labels {list(task.label_names)}; fix "
                             f"the row, or train with --labels naming every label")
        ids.append(task.label_names.index(text))
    return np.array(ids, dtype=np.int64)


def check_one_kind(path: Path, values: list[tuple[str, object]]) -> None:
    """Labels are all integers or all strings: '1' beside 'positive' is a mistake in the file."""
    integers = [is_integer(v) for _, v in values]
    if any(integers) and not all(integers):
        where, word = values[integers.index(False)]
        number = values[integers.index(True)][1]
        raise ValueError(f"{where}: label {word!r} is a string, but other labels are integers (such as {number!r}) "
                         f"in {path}; use one kind of label")


def file_labels(path: str | Path, label_column: str) -> list[str]:
    """The distinct class labels of a train file, sorted (integers by value): the run's default `labels`."""
    path = Path(path)
    columns, records = read_records(path)
    if not records:
        raise ValueError(f"{path} has a header but no examples; add rows")
    if label_column not in columns:
        raise ValueError(f"{path}: no column {label_column!r} (its columns: {columns}); name the label column "
                         f"with --label-column")
    values = [(f"{path}, line {line}", record.get(label_column)) for line, record in records]
    check_one_kind(path, values)
    labels = {label_text(value, where) for where, value in values}
    return sorted(labels, key=int if is_integer(next(iter(labels))) else None)


def own_data_defaults(run) -> dict:
    """What a run on your files records beyond its flags: the columns (unset: sentence, label) and the class
    labels (unset: the train file's); checks first that every file is there, not after training."""
    for flag, path in (("--train-file", run.train_file), ("--dev-file", run.dev_file), ("--test-file", run.test_file)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path} does not exist; give the path of a .csv, .tsv or .jsonl file")
    label_column, regression = run.label_column or "label", bool(run.regression)
    text_columns = run.text_columns or ["sentence"]
    if label_column in text_columns or len(set(text_columns)) < len(text_columns):
        raise ValueError(f"--text-columns {' '.join(text_columns)} with label column {label_column!r}: name each "
                         f"column once, and the label in none of the text columns (the model would read the answer)")
    labels = run.labels or (None if regression else file_labels(run.train_file, label_column))
    return dict(text_columns=text_columns, label_column=label_column, regression=regression,
                labels=labels)


def run_task(run) -> Task:
    """The task of a run: a GLUE task (--task), or a FileTask on your own files (--train-file).

    `run` is a TrainConfig, or any object with its fields (eval.py: the recorded options)."""
    if not run.train_file:
        return get_task(run.task)
    files = {"train": run.train_file, **({"dev": run.dev_file} if run.dev_file else {}), "test": run.test_file}
    return FileTask(name=Path(run.train_file).stem, dir_name=str(Path(run.train_file).parent),
                    text_columns=tuple(run.text_columns), label_column=run.label_column,
                    label_names=None if run.regression else tuple(run.labels),
                    metrics=REGRESSION_METRICS if run.regression else CLASSIFICATION_METRICS,
                    test_files={"test": run.test_file}, files=files)


def load_task_split(task: Task, split_name: str, data_dir: str | None = None) -> Split:
    """A split of the task: GLUE's (local tsv or hub), or your own file."""
    if isinstance(task, FileTask):
        return read_file(task.files[split_name], task)
    return load_split(task.name, split_name, data_dir)


def read_task_file(path: str | Path, task: Task) -> Split:
    """A file to evaluate or predict on (eval.py --file): your own data read with the run's columns and
    labels, or a tsv in the GLUE task's layout. Without a label column, labels are None."""
    if isinstance(task, FileTask):
        return read_file(path, task, need_label=False)
    return read_tsv_split(path, task.name)
