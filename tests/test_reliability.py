"""Reliability of train.py and eval.py on a tiny random BERT and tiny GLUE-layout data (tests/tiny_glue.py).

- Resume: a run SIGKILLed inside an epoch, run again with the same command, ends bit-identical
  to an uninterrupted run; the same command twice gives identical results.
- Nothing lost: a finished run is replaced only with --overwrite; repeating it is a no-op.
- Bad input: every user mistake ends in `error: <problem>: <fix>`, exit status 1, no traceback.
- Limits: inputs longer than the position table, a one-example dev set, empty splits.

Most CLI checks call train.main / eval.main in-process (SystemExit carries the message and an
uncaught exception would fail the test, as a traceback would); one runs real processes to show
that a message reaches stderr without a traceback.
"""
import dataclasses
import importlib
import json
import shutil
import signal
import subprocess
import time

import pytest
import tiny_glue
import torch
from conftest import TINY, write_tiny_bert
from safetensors.torch import load_file, safe_open

import train as train_cli
from minipelt import trainer
from minipelt.checkpoint import load_trainable, model_from_checkpoint
from minipelt.evaluation import predict
from minipelt.fewshot import EncodedSplit
from minipelt.trainer import train

eval_cli = importlib.import_module("eval")  # a plain `import eval` would shadow the builtin

# K=60 in batches of 2: 30 steps an epoch, long enough for a kill to land inside one. With this lr the
# best dev evaluation comes after the kill, so best.safetensors depends on the resumed epochs too.
RESUMABLE = ("--k", "60", "--batch-size", "2", "--epochs", "4", "--lr", "3e-3")


def run_args(workspace, output_dir, *extra, task="rte", method="lora"):
    return tiny_glue.cli_args(workspace.model, workspace.glue, output_dir, *extra, task=task, method=method)


def cli_error(main, args) -> str:
    """The message a CLI exits with; fails the test if it exits cleanly or is not an `error: ...`."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: "), message
    return message


def results(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def evaluations(stdout: str) -> list[str]:
    """The dev evaluations a run printed: 'step 60: dev spearman 0.1346 (best 0.1346 at step 60)'."""
    return [line for line in stdout.splitlines() if line.startswith("step ")]


def assert_same_run(a, b) -> None:
    """Same selected checkpoint (bit for bit) and the same dev and test metrics."""
    ra, rb = results(a), results(b)
    assert (ra["dev"], ra["test"], ra["best_step"]) == (rb["dev"], rb["test"], rb["best_step"])
    ta, tb = load_file(a / "best.safetensors"), load_file(b / "best.safetensors")
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[name], tb[name]) for name in ta)


# ---------------------------------------------------------------- resume and determinism


@pytest.fixture(scope="module")
def reference(workspace):
    """(output dir, stdout) of an uninterrupted train.py run of the resumable command (unipelt on STS-B)."""
    done = tiny_glue.run_script("train.py", *run_args(workspace, workspace.root / "reference", *RESUMABLE,
                                                      task="stsb", method="unipelt"))
    assert done.returncode == 0, done.stderr
    assert len(evaluations(done.stdout)) == 4  # one an epoch
    return workspace.root / "reference" / "seed1", done.stdout


def test_killed_run_resumes_to_the_uninterrupted_result(workspace, reference, tmp_path):
    args = run_args(workspace, tmp_path, *RESUMABLE, task="stsb", method="unipelt")
    run_dir = tmp_path / "seed1"
    process = subprocess.Popen(tiny_glue.command("train.py", *args), cwd=tiny_glue.REPO, env=tiny_glue.ONE_THREAD,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not (run_dir / "state.safetensors").exists():  # written (atomically) after each epoch
            assert process.poll() is None, "train.py ended before saving its first epoch"
            assert time.monotonic() < deadline, "no state.safetensors after 90 s"
            time.sleep(0.005)
        time.sleep(0.05)  # a few steps into epoch 2
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    with safe_open(str(run_dir / "state.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["state"])["epoch"] == 1  # killed before epoch 2 ended
    assert not (run_dir / "results.json").exists()

    done = tiny_glue.run_script("train.py", *args)
    assert done.returncode == 0, done.stderr
    assert "resuming from epoch 1" in done.stdout
    assert not (run_dir / "state.safetensors").exists()  # finished: nothing left to resume
    reference_dir, reference_stdout = reference
    assert evaluations(done.stdout) == evaluations(reference_stdout)[1:]  # epochs 2-4, evaluated alike
    assert_same_run(run_dir, reference_dir)


def test_same_command_twice_gives_identical_results(workspace, reference, tmp_path):
    done = tiny_glue.run_script("train.py", *run_args(workspace, tmp_path, *RESUMABLE, task="stsb", method="unipelt"))
    assert done.returncode == 0, done.stderr
    reference_dir, reference_stdout = reference
    assert evaluations(done.stdout) == evaluations(reference_stdout)
    assert_same_run(tmp_path / "seed1", reference_dir)


# ---------------------------------------------------------------- nothing lost


def test_finished_run_is_replaced_only_with_overwrite(workspace, tmp_path, capsys):
    args = run_args(workspace, tmp_path, "--epochs", "1")
    run_dir = tmp_path / "seed1"
    train_cli.main(args)
    files = {name: (run_dir / name).read_bytes() for name in ("results.json", "best.safetensors")}

    message = cli_error(train_cli.main, [*args, "--lr", "2e-3"])
    assert "holds a run with other options (lr)" in message and "--overwrite" in message
    assert {name: (run_dir / name).read_bytes() for name in files} == files

    capsys.readouterr()
    train_cli.main(args)  # the identical command: a no-op
    assert "already finished" in capsys.readouterr().out
    assert {name: (run_dir / name).read_bytes() for name in files} == files

    train_cli.main([*args, "--lr", "2e-3", "--overwrite"])
    assert results(run_dir)["options"]["lr"] == 2e-3
    assert (run_dir / "results.json").read_bytes() != files["results.json"]


# ---------------------------------------------------------------- bad input


def copy_model(workspace, tmp_path):
    return shutil.copytree(workspace.model, tmp_path / "model")


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
    model = copy_model(workspace, tmp_path)
    (model / "model.safetensors").write_text("<html>404 Not Found</html>")
    return {"--model": model}, ["is not a readable safetensors file", "in another format"]


def config_mismatch(workspace, tmp_path):
    model = copy_model(workspace, tmp_path)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
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


BAD_INPUTS = [missing_weights, pickle_weights, truncated_weights, not_safetensors, config_mismatch, unknown_task,
              unknown_method, unknown_model, k_too_large, wrong_column_count, label_out_of_range,
              empty_text, unwritable_output_dir]


@pytest.mark.parametrize("bad_input", BAD_INPUTS, ids=lambda f: f.__name__)
def test_train_bad_input_names_problem_and_fix(workspace, tmp_path, bad_input):
    changes, expected = bad_input(workspace, tmp_path)
    args = run_args(workspace, tmp_path / "out")
    for option, value in changes.items():  # replace the option's value in place
        args[args.index(option) + 1] = str(value)
    message = cli_error(train_cli.main, args)
    for part in expected:
        assert part in message, (part, message)


@pytest.mark.parametrize("bad_input", [unknown_task, unwritable_output_dir], ids=lambda f: f.__name__)
def test_train_process_prints_error_without_traceback(workspace, tmp_path, bad_input):
    changes, expected = bad_input(workspace, tmp_path)
    args = run_args(workspace, tmp_path / "out", *(str(x) for item in changes.items() for x in item))
    done = tiny_glue.run_script("train.py", *args)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and expected[0] in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_names_the_fix(workspace, lora_run, tmp_path):
    for message in (cli_error(train_cli.main, run_args(workspace, tmp_path, "--device", "cuda")),
                    cli_error(eval_cli.main, ["--checkpoint", lora_run, "--device", "cuda"])):
        assert "torch sees no CUDA device" in message and "use --device cpu" in message


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_best(workspace, tmp_path, monkeypatch):
    calls = 0
    finite_loss = trainer.loss_fn

    def diverging(logits, labels):  # epoch 1 (steps 1-5) trains normally, then the loss is NaN
        nonlocal calls
        calls += 1
        loss = finite_loss(logits, labels)
        return loss if calls <= 5 else loss * float("nan")

    monkeypatch.setattr(trainer, "loss_fn", diverging)
    message = cli_error(train_cli.main, run_args(workspace, tmp_path))
    assert "NaN or inf at step 6; training stopped" in message and "lower --lr" in message
    best = tmp_path / "seed1" / "best.safetensors"  # from the evaluation at step 5
    model = model_from_checkpoint(best, workspace.model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / "seed1" / "results.json").exists()


# ---------------------------------------------------------------- eval.py: bad checkpoints and files


@pytest.fixture(scope="module")
def lora_run(workspace):
    """A finished LoRA run on RTE (one epoch)."""
    out = workspace.root / "lora"
    train(tiny_glue.config(workspace.model, workspace.glue, out, task="rte", method="lora", epochs=1))
    return out


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

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--task", "stsb"])
    assert "has a head with 2 outputs, but stsb has 1" in message and "pass the --task it was trained on" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run / "best.safetensors", "--task", "rte"])
    assert "pass --model and --task" in message

    message = cli_error(eval_cli.main, ["--checkpoint", lora_run, "--task", "wnli"])
    assert "unknown GLUE task 'wnli'" in message


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


# ---------------------------------------------------------------- limits


def test_inputs_longer_than_the_position_table_are_truncated(workspace, tmp_path, capsys):
    glue = tiny_glue.write_task(tmp_path / "glue", "rte", length=(45, 55))  # pairs of ~55-65 tokens
    assert TINY.max_position_embeddings == 40
    out = tmp_path / "run"
    results = train(tiny_glue.config(workspace.model, glue, out, task="rte", method="unipelt", epochs=1,
                                     max_seq_length=128))
    capsys.readouterr()
    eval_cli.main(["--checkpoint", str(out), "--data-dir", str(glue), "--max-seq-length", "512"])
    assert json.loads(capsys.readouterr().out)["test"] == results["test"]


def test_one_example_dev_set_works(workspace, tmp_path):
    results = train(tiny_glue.config(workspace.model, workspace.glue, tmp_path, task="stsb", method="lora", epochs=1,
                                     dev_size=1))
    assert results["dev"] == {"spearman": 0.0, "pearson": 0.0}  # no correlation on one example: defined as 0


def test_empty_split_fails_clearly_and_the_run_resumes_once_fixed(workspace, lora_run, tmp_path):
    model = model_from_checkpoint(lora_run / "best.safetensors", workspace.model)
    with pytest.raises(ValueError, match="cannot evaluate on an empty split: the dev set .* need at least one"):
        predict(model, EncodedSplit([], [], [], None), batch_size=4, device=torch.device("cpu"))

    glue = shutil.copytree(workspace.glue, tmp_path / "glue")
    test_file = glue / "RTE" / "dev.tsv"
    rows = test_file.read_text()
    tiny_glue.write_rows(test_file, tiny_glue.HEADERS["rte"], [])  # a header only
    args = run_args(workspace, tmp_path / "out", "--epochs", "1", "--data-dir", glue)
    assert "cannot evaluate on an empty split" in cli_error(train_cli.main, args)
    assert (tmp_path / "out" / "seed1" / "best.safetensors").exists()  # training is kept...
    test_file.write_text(rows)
    train_cli.main(args)  # ...and only the test evaluation is redone
    assert results(tmp_path / "out" / "seed1")["test"]["accuracy"] >= 0


@pytest.mark.parametrize("eval_every", [4, 100])  # 15 steps: 4 does not divide them, 100 exceeds them
def test_the_last_step_is_evaluated_whatever_eval_every(workspace, tmp_path, eval_every):
    results = train(tiny_glue.config(workspace.model, workspace.glue, tmp_path / "out", eval_every=eval_every,
                                     patience=100, lr=1e-2))
    evaluated = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["steps"] == 15 and evaluated["best_step"] in {*range(eval_every, 15, eval_every), 15}
    assert (tmp_path / "out" / "best.safetensors").exists()
