"""Run options (minipelt/training/options.py): the whole catalogue of TrainConfig's and PeltConfig's options.

Every option that takes a number (or one of a few words) refuses an impossible value with a
message that names it: on train.py's, bench/grid/grid.py's and eval.py's command lines, and when a
config is built in code. An explicit value is kept, never replaced by a default.
"""
import importlib
from dataclasses import fields

import pytest

import train as train_cli
from bench.grid import grid
from minipelt.model.fields import flag
from minipelt.model.methods import PeltConfig
from minipelt.training.config import TrainConfig
from minipelt.training.options import value_type

eval_cli = importlib.import_module("eval")  # a plain `import eval` would shadow the builtin


def checked_options(config_class) -> list:
    return [f for f in fields(config_class) if "help" in f.metadata and value_type(f) is not bool]


def impossible(f):
    """A value the option must refuse."""
    m = f.metadata
    if m["choices"] is not None:
        return "nonsense"
    if m["minimum"] is not None:
        return m["minimum"] - (1 if value_type(f) is int else 0.5)
    return m["maximum"] + 1


CATALOGUE = [(cls, f) for cls in (TrainConfig, PeltConfig) for f in checked_options(cls)
             if f.metadata["minimum"] is not None or f.metadata["maximum"] is not None or f.metadata["choices"]]
IDS = [f.name for _, f in CATALOGUE]
REQUIRED = ["--task", "stsb", "--k", "10"]


def test_every_numeric_option_has_a_range():
    """A new numeric option cannot slip in unchecked."""
    for cls in (TrainConfig, PeltConfig):
        for f in checked_options(cls):
            if value_type(f) in (int, float):
                assert f.metadata["minimum"] is not None, f"{cls.__name__}.{f.name} accepts any number"
    assert {"batch_size", "epochs", "lr", "prefix_lr", "eval_every", "patience", "dev_size", "max_seq_length",
            "lora_r", "reduction_factor", "prefix_length", "k", "seed"} <= set(IDS)


@pytest.mark.parametrize("cls, f", CATALOGUE, ids=IDS)
def test_command_line_refuses_an_impossible_value_naming_the_option(cls, f, capsys):
    bad = str(impossible(f))
    for main, args in ((train_cli.parse_args, REQUIRED), (grid.parse_args, [])):
        if f.name in ("task", "k", "method", "seed") and main is grid.parse_args:
            continue  # the grid's own selection options
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--seeds" if f.name == "seed" else flag(f.name), bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument " + ("--seeds" if f.name == "seed" else flag(f.name)) in err and "must be" in err, err


@pytest.mark.parametrize("cls, f", CATALOGUE, ids=IDS)
def test_a_config_built_in_code_refuses_an_impossible_value_naming_the_option(cls, f):
    required = dict(task="stsb", k=10) if cls is TrainConfig else {}
    with pytest.raises(ValueError, match=f"{flag(f.name)} must be"):
        cls(**{**required, f.name: impossible(f)})


FLOATS = [(cls, f) for cls, f in CATALOGUE if value_type(f) is float]


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("cls, f", FLOATS, ids=[f.name for _, f in FLOATS])
def test_every_float_option_refuses_nan_and_infinity(cls, f, bad, capsys):
    """NaN passes every range comparison (nan < 0 is False): --lr inf trained into NaN weights."""
    with pytest.raises(SystemExit):
        train_cli.parse_args([*REQUIRED, f"{flag(f.name)}={bad}"])
    assert f"argument {flag(f.name)}: must be a finite number, got {float(bad)}" in capsys.readouterr().err
    required = dict(task="stsb", k=10) if cls is TrainConfig else {}
    with pytest.raises(ValueError, match=f"{flag(f.name)} must be a finite number"):
        cls(**{**required, f.name: float(bad)})


def test_float_options_are_all_checked():
    assert {"lr", "prefix_lr", "warmup_ratio", "weight_decay", "max_grad_norm", "lora_alpha"} <= {
        f.name for _, f in FLOATS}


def test_a_seed_too_large_for_the_data_order_generator_is_refused(capsys):
    """The epoch's order is seeded with seed * 100_003 + epoch, which must stay below 2**64."""
    with pytest.raises(SystemExit):
        train_cli.parse_args([*REQUIRED, "--seeds", "1", str(2 * 10**14)])
    assert "argument --seeds/--seed: must be at most 4294967295" in capsys.readouterr().err
    assert train_cli.parse_args([*REQUIRED, "--seeds", str(2**32 - 1)]).seeds == [2**32 - 1]


def test_max_grad_norm_0_is_documented_as_no_clipping():
    help_text = next(f for f in fields(TrainConfig) if f.name == "max_grad_norm").metadata["help"]
    assert "0: no clipping" in help_text


@pytest.mark.parametrize("option, bad", [("--batch-size", "0"), ("--max-seq-length", "2")])
def test_eval_refuses_impossible_values(option, bad, capsys):
    with pytest.raises(SystemExit):
        eval_cli.parse_args(["--checkpoint", "x", option, bad])
    assert f"argument {option}: must be at least" in capsys.readouterr().err


def test_explicit_values_are_kept_not_replaced_by_defaults():
    args = train_cli.parse_args([*REQUIRED, "--lr", "0", "--prefix-lr", "0", "--epochs", "1", "--patience", "1",
                                 "--eval-every", "1", "--dev-size", "1", "--max-seq-length", "8", "--lora-r", "1",
                                 "--warmup-ratio", "0"])
    run = train_cli.run_configs(args)[0].resolved()
    assert (run.lr, run.prefix_lr, run.epochs, run.patience, run.eval_every, run.dev_size, run.max_seq_length,
            run.warmup_ratio) == (0, 0, 1, 1, 1, 1, 8, 0)
    assert run.method_options == {"lora_r": 1} and run.pelt().lora_r == 1
    unset = TrainConfig(task="stsb", k=10, method="lora").resolved()
    assert (unset.lr, unset.prefix_lr, unset.epochs) == (1e-3, None, 30)  # the registry's defaults


def test_k_takes_a_number_or_full(capsys):
    assert train_cli.parse_args(["--task", "stsb", "--k", "full"]).k is None
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--task", "stsb", "--k", "many"])
    assert "argument --k: takes a number of training examples or 'full', not 'many'" in capsys.readouterr().err
