"""One run's configuration, which is also the command line of train.py and bench/grid/grid.py.

Every field is a flag (`max_seq_length` -> --max-seq-length) with its help, default and accepted
values (options.py); PeltConfig's fields are the method options, kept in `method_options` when given.
"""
import argparse
import dataclasses
from dataclasses import dataclass, field

from minipelt.data.files import READERS, own_data_defaults
from minipelt.data.glue import TASKS
from minipelt.model.classifier import POOLINGS
from minipelt.model.fields import check, flag, option
from minipelt.model.methods import METHODS, PARTS, PeltConfig, get_method
from minipelt.training.options import add_arguments


def parse_k(value: str) -> int | None:
    """A --k value: a number of training examples, or 'full' (None) for the whole training set."""
    if value != "full" and not value.isdigit():
        raise argparse.ArgumentTypeError(f"takes a number of training examples or 'full', not {value!r}")
    return None if value == "full" else int(value)


# Options of --train-file runs only; unset (None) in a GLUE run, so that its recorded options are unchanged.
OWN_DATA = ("dev_file", "test_file", "text_columns", "label_column", "regression", "labels")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    task: str | None = option(None, f"GLUE task: {' '.join(TASKS)}; or give --train-file (your own data)")
    k: int | None = option(help="training examples per seed (100, 500, 1000), or 'full'", minimum=1, parse=parse_k)
    method: str = option("unipelt", f"{', '.join(METHODS)}, or a '+' combination of {', '.join(PARTS)}")
    model: str = option("bert-base-uncased", "a fetched name (minilm, bert-base-uncased) or a model directory")
    seed: int = option(42, "data seed: the few-shot sample, initialisation, data order, dropout", minimum=0,
                       maximum=2**32 - 1)  # the epoch's data order is seeded with seed * 100_003 + epoch (< 2**64)
    lr: float | None = option(None, "AdamW learning rate (unset: the method's, see methods.METHODS)", minimum=0)
    prefix_lr: float | None = option(None, "the prefix MLP's rate (unset: the method's, else --lr)", minimum=0)
    epochs: int | None = option(None, "training epochs (unset: the method's)", minimum=1)
    batch_size: int = option(16, "training batch size (global, over all processes)", minimum=1)
    eval_batch_size: int = option(64, "batch size of dev and test evaluations", minimum=1)
    max_seq_length: int = option(128, "tokens per example (8 fit [CLS] a [SEP] b [SEP]; capped by the model)",
                                 minimum=8)
    warmup_ratio: float = option(0.06, "share of the steps with a linear lr warm-up", minimum=0, maximum=1)
    weight_decay: float = option(0.0, "AdamW weight decay", minimum=0)
    max_grad_norm: float = option(1.0, "gradient clipping norm; 0: no clipping (as in Hugging Face)", minimum=0)
    eval_every: int | None = option(None, "steps between dev evaluations (unset: once an epoch)", minimum=1)
    save_every: int = option(500, "steps between saves of the resumable state (it is also saved at every "
                                  "epoch end)", minimum=1)
    patience: int = option(10, "early stopping: evaluations without improvement", minimum=1)
    dev_size: int = option(1000, "dev examples taken after the K train ones (1000 in the paper)", minimum=1)
    pooling: str | None = option(None, "head input (unset: the checkpoint's declared, else cls)", choices=POOLINGS)
    device: str = option("auto", "auto (cuda if available), cpu, cuda, cuda:1, ...")
    textbook: bool = option(False, "run the model's textbook functions, no kernels (as `with minipelt.textbook():`): "
                                   "slower, for reading and debugging; dropout draws differ from the kernels'")
    precision: str = option("fp32", "bf16: CUDA, or a CPU with native bf16; fp16: CUDA only",
                            choices=("fp32", "bf16", "fp16"))
    data_dir: str | None = option(None, "a GLUE tsv directory (unset: $MINIPELT_GLUE_DIR, else the hub)")
    # Your own data instead of --task (minipelt/data/files.py, docs/own-data.md)
    train_file: str | None = option(None, f"your training data ({', '.join(READERS)}) instead of --task: the K "
                                          "train and the dev examples are drawn from it")
    dev_file: str | None = option(None, "your dev set (unset: --dev-size examples of --train-file after the K)")
    test_file: str | None = option(None, "your test set, scored with the best checkpoint at the end (needed "
                                         "with --train-file)")
    text_columns: list[str] | None = option(None, "the one or two text columns of your files (unset: sentence)",
                                       parse=str, nargs="+")
    label_column: str | None = option(None, "the label column of your files (unset: label)")
    regression: bool | None = option(None, "your labels are numbers to predict (one output, MSE, Spearman)")
    labels: list[str] | None = option(None, "your class labels in id order (unset: the train file's, sorted)",
                                 parse=str, nargs="+")
    output_dir: str = option("runs/run", "where results.json and best.safetensors go")
    method_options: dict = field(default_factory=dict)  # PeltConfig overrides, e.g. {"lora_r": 4}

    def __post_init__(self):
        check(self)
        for name in ("text_columns", "labels"):  # lists, as results.json gives them back
            if getattr(self, name) is not None:
                object.__setattr__(self, name, list(getattr(self, name)))
        check_data(self)

    def resolved(self) -> "TrainConfig":
        """Fill in the method's defaults for what is unset, so results.json records what actually ran;
        on your own data also the text column and the class labels (from the train file)."""
        default = get_method(self.method)
        own = own_data_defaults(self) if self.train_file else {}
        return dataclasses.replace(
            self, lr=default.lr if self.lr is None else self.lr,
            epochs=default.epochs if self.epochs is None else self.epochs,
            prefix_lr=default.prefix_lr if self.prefix_lr is None else self.prefix_lr, **own)

    def pelt(self) -> PeltConfig:
        return PeltConfig.from_method(self.method, **self.method_options)


def check_data(run: TrainConfig) -> None:
    """Exactly one data source: a GLUE --task, or --train-file with its --test-file."""
    if (run.task is None) == (run.train_file is None):
        both = ", not both" if run.task else ""
        raise ValueError(f"give --task (a GLUE task) or --train-file (your own data){both}")
    if run.task is not None and (given := [f for f in OWN_DATA if getattr(run, f) is not None]):
        raise ValueError(f"{flag(given[0])} is for your own data: give --train-file instead of --task")
    if run.train_file is not None and run.test_file is None:
        raise ValueError("--train-file needs a --test-file too: the examples scored at the end")
    if run.text_columns is not None and len(run.text_columns) not in (1, 2):
        raise ValueError(f"--text-columns takes one or two column names (a text, or a pair), not "
                         f"{len(run.text_columns)}")
    if run.regression and run.labels:
        raise ValueError("--labels names classes, but --regression predicts numbers: drop one of them")
    if run.labels is not None and len(set(run.labels)) != len(run.labels):
        raise ValueError(f"--labels {' '.join(run.labels)} names a label twice; give each class once")


def add_run_options(parser: argparse.ArgumentParser, skip=(), title: str | None = None) -> None:
    """Every TrainConfig field but those in `skip` as a flag (in a group if `title`), then the method options."""
    add_arguments(parser.add_argument_group(title) if title else parser, TrainConfig, skip=(*skip, "method_options"))
    add_arguments(parser.add_argument_group("method options (defaults from the paper)"), PeltConfig,
                  unset_by_default=True)


def run_config(args: argparse.Namespace, **fields) -> TrainConfig:
    """The TrainConfig of parsed run options; `fields` gives those the caller decides (seed, output_dir, ...)."""
    method_options = {f.name: getattr(args, f.name) for f in dataclasses.fields(PeltConfig)
                      if getattr(args, f.name, None) is not None}
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**{**given, **fields}, method_options=method_options)
