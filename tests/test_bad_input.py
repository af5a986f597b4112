"""User mistakes on train.py and eval.py (tiny BERT and data, tests/tiny_glue.py): every one ends in
`error: <problem>: <fix>`, exit status 1, no traceback.

Most checks call train.main / eval.main in-process (SystemExit carries the message and an uncaught
exception would fail the test, as a traceback would); one runs real processes to show that a message
reaches stderr without a traceback. Impossible option values: test_options.py.
"""
import dataclasses
import json
import shutil

import pytest
import tiny_glue
import torch
from conftest import TINY, write_tiny_bert
from tiny_glue import cli_error, eval_cli, run_args

import train as train_cli
from minipelt.training import trainer
from minipelt.training.checkpoint import load_trainable, model_from_checkpoint
from minipelt.training.distributed import Context
from minipelt.training.trainer import train


@pytest.fixture(scope="module")
def lora_run(workspace):
    """A finished LoRA run on RTE (one epoch)."""
    out = workspace.root / "lora"
    train(tiny_glue.config(workspace.model, workspace.glue, out, task="rte", method="lora", epochs=1))
    return out


# ---------------------------------------------------------------- train.py


def copy_model(workspace, tmp_path):
    return shutil.copytree(workspace.model, tmp_path / "model")


def model_with_config(workspace, tmp_path, **changes):
    """A copy of the workspace's model whose config.json has `changes`."""
    model = copy_model(workspace, tmp_path)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **changes}))
    return model


def model_with_file(workspace, tmp_path, name: str, text: str):
    """A copy of the workspace's model with its file `name` replaced by `text`."""
    model = copy_model(workspace, tmp_path)
    (model / name).write_text(text)
    return model


def copy_glue_with_row(workspace, tmp_path, row: str):
    """The RTE data with its first training row replaced by `row`."""
    glue = shutil.copytree(workspace.glue, tmp_path / "glue")
    path = glue / "RTE" / "train.tsv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], row, *lines[2:]]) + "\n")
    return glue


def missing_weights(workspace, tmp_path):
    model = copy_model(workspace, tmp_path)
    (model / "model.safetensors").unlink()
    return {"--model": model}, ["no weights at", "model.safetensors", "fetch"]


def pickle_weights(workspace, tmp_path):
    model = copy_model(workspace, tmp_path)
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    return {"--model": model}, ["pytorch_model.bin is there, but pickles are never loaded", "convert it to safetensors"]


def truncated_weights(workspace, tmp_path):
    model = copy_model(workspace, tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return {"--model": model}, ["is not a readable safetensors file", "truncated", "Fetch it again"]


def not_safetensors(workspace, tmp_path):
    model = model_with_file(workspace, tmp_path, "model.safetensors", "<html>404 Not Found</html>")
    return {"--model": model}, ["is not a readable safetensors file", "in another format"]


def config_mismatch(workspace, tmp_path):
    model = model_with_config(workspace, tmp_path, intermediate_size=48)
    return {"--model": model}, ["do not fit this BERT config", "wrong shape: encoder.layer.0.intermediate.dense",
                                "Check that config.json belongs to these weights"]


def unknown_task(workspace, tmp_path):
    return {"--task": "wnli"}, ["unknown GLUE task 'wnli'", "choose one of: cola"]


def unknown_method(workspace, tmp_path):
    return {"--method": "adaptr"}, ["unknown method 'adaptr'", "use one of finetune"]


def unknown_model(workspace, tmp_path):
    return {"--model": "bert-huge"}, ["unknown model 'bert-huge'", "give a directory with config.json"]


def k_too_large(workspace, tmp_path):
    return {"--k": "70"}, ["K=70 train + 20 dev examples = 90, but the training set has only 80", "use --k 60 or less"]


def wrong_column_count(workspace, tmp_path):
    return ({"--data-dir": copy_glue_with_row(workspace, tmp_path, "0\tone sentence\tentailment")},
            ["train.tsv, line 2: 3 tab-separated columns, expected 4", "a tab inside a text, or a truncated row"])


def label_out_of_range(workspace, tmp_path):
    return ({"--data-dir": copy_glue_with_row(workspace, tmp_path, "0\tcat dog\tcat\tneutral")},
            ["train.tsv, line 2: label 'neutral'", "not one of ['entailment', 'not_entailment']",
             "fix or remove the row"])


def empty_text(workspace, tmp_path):
    return ({"--data-dir": copy_glue_with_row(workspace, tmp_path, "0\t \tcat\tentailment")},
            ["train.tsv, line 2: empty text in column 'sentence1'", "fill it in or remove the row"])


def unwritable_output_dir(workspace, tmp_path):
    (tmp_path / "afile").write_text("a file, so nothing can be created below it (even by root)")
    return {"--output-dir": tmp_path / "afile" / "sub"}, ["cannot write to the output directory",
                                                          "choose a writable --output-dir"]


def negative_dropout(workspace, tmp_path):
    model = model_with_config(workspace, tmp_path, attention_probs_dropout_prob=-0.1)
    return {"--model": model}, ["config.json: attention_probs_dropout_prob must be a probability in [0, 1), got -0.1"]


def dropout_of_one(workspace, tmp_path):
    model = model_with_config(workspace, tmp_path, hidden_dropout_prob=1.0)
    return {"--model": model}, ["hidden_dropout_prob must be a probability in [0, 1), got 1.0"]


def config_field_of_wrong_kind(workspace, tmp_path):
    model = model_with_config(workspace, tmp_path, hidden_size="32")
    return {"--model": model}, ["config.json: hidden_size must be an integer, got '32'"]


def heads_not_dividing_hidden_size(workspace, tmp_path):
    model = model_with_config(workspace, tmp_path, num_attention_heads=5)
    return {"--model": model}, ["hidden_size (32) must be a multiple of num_attention_heads (5)"]


def config_not_json(workspace, tmp_path):
    model = model_with_file(workspace, tmp_path, "config.json", "{broken")
    return {"--model": model}, ["config.json is not valid JSON (Expecting property name", "fetch the checkpoint's config.json again"]


def vocab_without_specials(workspace, tmp_path):
    model = model_with_file(workspace, tmp_path, "vocab.txt", "")
    return {"--model": model}, ["vocab.txt has no [CLS] or [SEP] token", "fetch the model's vocab.txt again"]


def tokenizer_json_unreadable(workspace, tmp_path):
    model = model_with_file(workspace, tmp_path, "tokenizer.json", "{broken")
    return {"--model": model}, ["tokenizer.json cannot be read by the tokenizers library",
                                "delete it to build the tokenizer from vocab.txt"]


def tokenizer_of_another_model(workspace, tmp_path):
    words = (workspace.model / "vocab.txt").read_text().splitlines() + [f"extra{i}" for i in range(8)]
    model = model_with_file(workspace, tmp_path, "vocab.txt", "\n".join(words) + "\n")
    return {"--model": model}, ["has 72 tokens, but the model's config.json gives vocab_size 64",
                                "the tokenizer files belong to another model"]


def zero_width_adapter(workspace, tmp_path):
    return {"--method": "adapter --reduction-factor 10000"}, [
        "--reduction-factor 10000 leaves the adapter no bottleneck units (hidden size 32)", "use at most 32"]


BAD_INPUTS = [negative_dropout, dropout_of_one, config_field_of_wrong_kind, heads_not_dividing_hidden_size, config_not_json,
              vocab_without_specials, tokenizer_json_unreadable, tokenizer_of_another_model,
              zero_width_adapter, missing_weights, pickle_weights, truncated_weights, not_safetensors, config_mismatch, unknown_task,
              unknown_method, unknown_model, k_too_large, wrong_column_count, label_out_of_range,
              empty_text, unwritable_output_dir]


@pytest.mark.parametrize("bad_input", BAD_INPUTS, ids=lambda f: f.__name__)
def test_train_bad_input_names_problem_and_fix(workspace, tmp_path, bad_input):
    changes, expected = bad_input(workspace, tmp_path)
    args = run_args(workspace, tmp_path / "out")
    for option, value in changes.items():  # replace the option's value in place (a value may add options)
        index = args.index(option)
        args[index + 1: index + 2] = str(value).split(" ") if option == "--method" else [str(value)]
    message = cli_error(train_cli.main, args)
    for part in expected:
        assert part in message, (part, message)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("bad_input", [unknown_task, unwritable_output_dir], ids=lambda f: f.__name__)
def test_train_process_prints_error_without_traceback(workspace, tmp_path, bad_input):
    changes, expected = bad_input(workspace, tmp_path)
    args = run_args(workspace, tmp_path / "out", *(str(x) for item in changes.items() for x in item))
    done = tiny_glue.run_script("train.py", *args)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and expected[0] in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_method_is_refused_before_any_note_about_its_defaults(workspace, tmp_path, capsys):
    args = [a for a in run_args(workspace, tmp_path / "out") if a not in ("--lr", "1e-3", "--epochs", "3")]
    args[args.index("--method") + 1] = "lorra"  # no tuned defaults: a known combination would get the note
    assert "unknown method 'lorra'" in cli_error(train_cli.main, args)
    assert "note:" not in capsys.readouterr().out


def test_a_repeated_seed_is_refused(workspace, tmp_path):
    message = cli_error(train_cli.main, run_args(workspace, tmp_path / "out", "--seeds", "1", "2", "1"))
    assert "--seeds repeats 1" in message and "give each once" in message
    assert not (tmp_path / "out").exists()


def finished_run(workspace, tmp_path) -> tuple[list, object]:
    args = run_args(workspace, tmp_path / "out", "--epochs", "1")
    train_cli.main(args)
    return args, tmp_path / "out" / "seed1"


def interrupted_run(workspace, tmp_path) -> tuple[list, object]:
    """A run whose training finished but whose test set is a header only: its state is kept to resume."""
    glue = shutil.copytree(workspace.glue, tmp_path / "glue")
    tiny_glue.write_rows(glue / "RTE" / "dev.tsv", tiny_glue.HEADERS["rte"], [])
    args = run_args(workspace, tmp_path / "out", "--epochs", "1", "--data-dir", glue)
    cli_error(train_cli.main, args)
    return args, tmp_path / "out" / "seed1"


def damage(path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"{not json"}[how])


@pytest.mark.parametrize("file, how, expected", [
    ("results.json", "garbage", "is damaged or not written by train.py (Expecting property name"),
    ("results.json", "no options", 'is damaged or not written by train.py (no "options"'),
    ("state.safetensors", "truncated", "is damaged or not written by train.py"),
    ("best.safetensors", "truncated", "is damaged or not written by train.py"),
])
def test_a_damaged_run_file_is_named_before_anything_trains(workspace, tmp_path, capsys, file, how, expected):
    """A finished run's results.json, or an interrupted run's state or best checkpoint (found on resume,
    before the remaining epochs train): the error names the file and the fix; nothing else is touched."""
    args, run_dir = (finished_run if file == "results.json" else interrupted_run)(workspace, tmp_path)
    path = run_dir / file
    if how == "no options":
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "options"}))
    else:
        damage(path, how)
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    capsys.readouterr()
    message = cli_error(train_cli.main, args)
    assert str(path) in message and expected in message and "pass --overwrite to start this run over" in message
    assert "step " not in capsys.readouterr().out  # no training step was taken
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == files


def test_several_seeds_without_a_test_set_train_and_say_why_there_is_no_summary(workspace, tmp_path, capsys):
    glue = shutil.copytree(workspace.glue, tmp_path / "glue")
    (glue / "RTE" / "dev.tsv").unlink()  # GLUE's dev file is our test set
    train_cli.main(run_args(workspace, tmp_path / "out", "--epochs", "1", "--seeds", "1", "2", "--data-dir", glue))
    out = capsys.readouterr().out
    assert "skipping test set test" in out and "no summary.json: the test set was not scored" in out
    assert all((tmp_path / "out" / f"seed{seed}" / "results.json").exists() for seed in (1, 2))
    assert not (tmp_path / "out" / "summary.json").exists()


def test_under_torchrun_a_device_option_is_said_to_be_ignored(workspace, tmp_path, capsys):
    run = tiny_glue.config(workspace.model, workspace.glue, tmp_path, device="cuda:3")
    assert trainer.run_device(run, Context(0, 2, torch.device("cpu"))) == torch.device("cpu")
    out = capsys.readouterr().out
    assert "note: under torchrun each process takes its own device" in out and "--device cuda:3 is ignored" in out
    trainer.run_device(dataclasses.replace(run, device="auto"), Context(0, 2, torch.device("cpu")))
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_names_the_fix(workspace, lora_run, tmp_path):
    for message in (cli_error(train_cli.main, run_args(workspace, tmp_path, "--device", "cuda")),
                    cli_error(eval_cli.main, ["--checkpoint", lora_run, "--device", "cuda"])):
        assert "torch sees no CUDA device" in message and "use --device cpu" in message


# ---------------------------------------------------------------- eval.py: bad checkpoints and files


def test_eval_bad_checkpoints_name_problem_and_fix(workspace, lora_run, tmp_path):
    message = cli_error(eval_cli.main, ["--checkpoint", tmp_path / "nothing"])
    assert "no checkpoint at" in message and "pass the best.safetensors that train.py wrote" in message

    base_weights = workspace.model / "model.safetensors"
    message = cli_error(eval_cli.main, ["--checkpoint", base_weights, "--model", workspace.model, "--task", "rte"])
    assert "is not a minipelt checkpoint" in message

    write_tiny_bert(tmp_path / "other", seed=1)  # same shapes, other weights
    shutil.copy(workspace.model / "vocab.txt", tmp_path / "other")
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--model", tmp_path / "other"])
    assert "was trained on other base weights" in message and "pass the --model it was trained with" in message

    write_tiny_bert(tmp_path / "wider", config=dataclasses.replace(TINY, hidden_size=48))  # another shape
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--model", tmp_path / "wider"])
    assert "was trained on a base model of another shape" in message and "load the base model" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run / "best.safetensors", "--model", workspace.model,
                                        "--task", "stsb"])
    assert "has a head with 2 outputs, but stsb has 1" in message and "pass the --task it was trained on" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run / "best.safetensors", "--task", "rte"])
    assert "pass --model and --task" in message

    more_words = tokenizer_of_another_model(workspace, tmp_path / "more_words")[0]["--model"]
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--model", more_words])
    assert "the tokenizer files belong to another model" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--task", "wnli"])
    assert "unknown GLUE task 'wnli'" in message

    # an RTE run on MRPC (both two classes): refused, not scored under the wrong name
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--task", "mrpc"])
    assert "is a rte run, not mrpc: drop --task" in message


def test_eval_names_a_damaged_results_json(lora_run, tmp_path):
    run = shutil.copytree(lora_run, tmp_path / "run")
    (run / "results.json").write_text("{truncated")
    message = cli_error(eval_cli.main, ["--checkpoint", run])
    assert f"{run / 'results.json'} is damaged" in message and "pass the checkpoint file itself" in message


def test_checkpoint_of_another_method_is_refused(workspace, lora_run, tmp_path):
    adapter = tmp_path / "adapter"
    train(tiny_glue.config(workspace.model, workspace.glue, adapter, task="rte", method="adapter", epochs=1))
    mixed = shutil.copytree(lora_run, tmp_path / "mixed")  # LoRA's results.json, the adapter's checkpoint
    shutil.copy(adapter / "best.safetensors", mixed / "best.safetensors")
    message = cli_error(eval_cli.main, ["--checkpoint", mixed])
    assert "holds a adapter checkpoint, but results.json beside it records method lora" in message
    assert "come from different runs" in message

    model = model_from_checkpoint(lora_run / "best.safetensors", workspace.model)  # the library check behind it
    with pytest.raises(ValueError, match="was trained with method adapter .* build the model with the checkpoint"):
        load_trainable(model, adapter / "best.safetensors")


def test_eval_bad_files_name_problem_and_fix(lora_run, tmp_path):
    header_only = tiny_glue.write_rows(tmp_path / "empty.tsv", tiny_glue.HEADERS["rte"], [])
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--file", header_only])
    assert "has no examples (a header only?)" in message and "add rows" in message

    unlabelled = tiny_glue.write_rows(tmp_path / "u.tsv", "index\tsentence1\tsentence2", ["0\tcat dog\tcat"])
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--file", unlabelled])
    assert "has no 'label' column" in message and "pass --predict OUT.tsv" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--file", tmp_path / "nope.tsv"])
    assert "nope.tsv does not exist" in message


def test_eval_bad_text_and_predict_path_name_problem_and_fix(lora_run, tmp_path):
    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--text", "cat dog"])  # RTE takes a pair
    assert "rte takes 2 text(s) per input (sentence1, sentence2), not 1: give its second text with --text-pair" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--text", "cat", "--text-pair", "  "])
    assert "the input is empty" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--predict", tmp_path / "missing" / "p.tsv"])
    assert f"the folder {tmp_path / 'missing'} does not exist; create it" in message
