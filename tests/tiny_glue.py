"""Tiny GLUE-layout data sets and a tiny model directory, for end-to-end tests of train.py and eval.py.

The tiny BERT of conftest has 64 token ids. `write_model` adds a vocab.txt that fills them
with BERT's five special tokens and 59 lowercase words, so minipelt.data.tokenizer builds a real
WordPiece tokenizer, and the tsv files below use only those words: every token is known and
every id is inside the embedding table.

Two tasks stand in for GLUE, written in its layout (`<data dir>/<Task dir>/{train,dev}.tsv`;
GLUE's dev file is our test set):
  stsb  regression: the score is 5 * (share of sentence1's words repeated in sentence2)
  rte   classification: entailment iff sentence2's words all occur in sentence1
Both carry some signal; whether a tiny random BERT learns it does not matter here. Deterministic in `seed`.
"""
import importlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import TINY, write_tiny_bert

from minipelt.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = tuple(
    "apple bird blue boat book bread car cat chair city cloud cold dark dog door fast fish "
    "flower forest garden girl glass gold green hill horse house king lake leaf light moon "
    "mountain music night ocean paper queen rain red river road rock sea ship sky slow small snow "
    "song star stone sun table tree warm water white wind".split()
)
HEADERS = {"stsb": "index\tsentence1\tsentence2\tscore", "rte": "index\tsentence1\tsentence2\tlabel"}
DIRS = {"stsb": "STS-B", "rte": "RTE"}
N_TRAIN, N_TEST = 80, 20
# Scripts run on one thread, as conftest sets for the tests' own process: two threads per process
# fight over a shared 2-core machine (10x slower). Runs compared bit for bit must share the setting.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_model(directory: Path, seed: int = 0) -> Path:
    """A random tiny BERT (config.json, model.safetensors) with a vocab.txt filling its 64 ids."""
    assert len(SPECIAL + WORDS) == TINY.vocab_size == len(set(WORDS)) + len(SPECIAL)
    write_tiny_bert(directory, seed=seed)
    (directory / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    return directory


def example(task: str, rng: random.Random, length: int) -> tuple[str, str, str]:
    """(sentence1, sentence2, label) for one row of `task`."""
    first = rng.sample(WORDS, length)
    if task == "stsb":
        shared = rng.randint(0, length)
        second = first[:shared] + rng.sample([w for w in WORDS if w not in first], length - shared)
        return " ".join(first), " ".join(second), f"{5 * shared / length:.3f}"
    entailed = rng.random() < 0.5
    pool = first if entailed else [w for w in WORDS if w not in first]
    return " ".join(first), " ".join(rng.sample(pool, 2)), "entailment" if entailed else "not_entailment"


def write_rows(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in [header, *rows]))
    return path


def write_task(data_dir: Path, task: str, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0,
               length: tuple[int, int] = (3, 8)) -> Path:
    """`data_dir/<Task>/train.tsv` and `dev.tsv` (our test set) with sentences of `length` words."""
    rng = random.Random(seed)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_test)):
        rows = ["\t".join((str(i), *example(task, rng, rng.randint(*length)))) for i in range(n)]
        write_rows(data_dir / DIRS[task] / name, HEADERS[task], rows)
    return data_dir


def workspace(root: Path) -> SimpleNamespace:
    """root/model (the tiny BERT) and root/glue (STS-B and RTE in GLUE layout)."""
    glue = write_task(root / "glue", "stsb")
    write_task(glue, "rte", seed=1)
    return SimpleNamespace(root=root, model=write_model(root / "model"), glue=glue)


def config(model_dir: Path, data_dir: Path, output_dir: Path, task: str = "stsb", method: str = "unipelt",
           **overrides) -> TrainConfig:
    """A run that takes about a second on a CPU: K=40, 20 dev examples, 3 epochs of 5 steps."""
    options = dict(task=task, k=40, method=method, model=str(model_dir), seed=1, lr=1e-3, epochs=3, batch_size=8,
                   dev_size=20, device="cpu", data_dir=str(data_dir), output_dir=str(output_dir))
    return TrainConfig(**{**options, **overrides})


def cli_args(model_dir: Path, data_dir: Path, output_dir: Path, *extra: str, task: str = "stsb",
             method: str = "unipelt") -> list[str]:
    """train.py arguments for the run `config` describes, into output_dir/seed1. An option in `extra`
    overrides the one here (argparse keeps the last), e.g. ("--epochs", "1") or ("--seeds", "1", "2")."""
    return ["--task", task, "--k", "40", "--method", method, "--model", str(model_dir), "--seeds", "1",
            "--lr", "1e-3", "--epochs", "3", "--batch-size", "8", "--dev-size", "20", "--device", "cpu",
            "--data-dir", str(data_dir), "--output-dir", str(output_dir), *map(str, extra)]


def command(script: str, *args) -> list[str]:
    return [sys.executable, str(REPO / script), *map(str, args)]


def run_script(script: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` from the repository root, as a user runs it; stdout and stderr captured."""
    return subprocess.run(command(script, *args), cwd=REPO, env=ONE_THREAD, capture_output=True, text=True,
                          timeout=timeout)


eval_cli = importlib.import_module("eval")  # eval.py; a plain `import eval` would shadow the builtin


def run_args(workspace, output_dir, *extra, task="rte", method="lora") -> list[str]:
    """cli_args for the workspace's model and data (a LoRA run on RTE unless told)."""
    return cli_args(workspace.model, workspace.glue, output_dir, *extra, task=task, method=method)


def cli_error(main, args) -> str:
    """The message a CLI exits with; fails the test if it exits cleanly or is not an `error: ...`."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: "), message
    return message


def results(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())
