"""Reliability of train.py and eval.py on a tiny random BERT and tiny GLUE-layout data (tests/tiny_glue.py).

- Resume: a run SIGKILLed inside an epoch, run again with the same command, ends bit-identical
  to an uninterrupted run; the same command twice gives identical results.
- Nothing lost: a finished run is replaced only with --overwrite; repeating it is a no-op; a NaN
  loss stops the run and keeps the best checkpoint.
- Limits: inputs longer than the position table, a one-example dev set, empty splits.
(User mistakes: test_bad_input.py.)
"""
import json
import shutil
import signal
import subprocess
import time

import pytest
import tiny_glue
import torch
from conftest import TINY
from safetensors.torch import load_file, safe_open
from tiny_glue import cli_error, eval_cli, results, run_args

import train as train_cli
from minipelt.training import trainer
from minipelt.model.bert import BertModel
from minipelt.training.checkpoint import model_from_checkpoint
from minipelt.model.classifier import SequenceClassifier
from minipelt.training.evaluation import predict
from minipelt.data.fewshot import EncodedSplit
from minipelt.training.trainer import train

# K=60 in batches of 2: 30 steps an epoch, long enough for a kill to land inside one. With this lr the
# best dev evaluation comes after the kill, so best.safetensors depends on the resumed epochs too.
RESUMABLE = ("--k", "60", "--batch-size", "2", "--epochs", "4", "--lr", "3e-3")


def evaluations(stdout: str) -> list[str]:
    """The dev evaluations a run printed: 'step 60: dev spearman 0.1346 (best 0.1346 at step 60)'."""
    return [line for line in stdout.splitlines() if line.startswith("step ")]


def assert_same_run(a, b) -> None:
    """Same selected checkpoint (bit for bit), the same dev and test metrics and the same history of dev
    evaluations (a resumed run keeps the evaluations made before it was interrupted)."""
    ra, rb = results(a), results(b)
    assert (ra["dev"], ra["test"], ra["best_step"]) == (rb["dev"], rb["test"], rb["best_step"])
    assert ra["history"] == rb["history"] and ra["history"]
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
    assert [entry["step"] for entry in results(run_dir)["history"]] == [30, 60, 90, 120]  # epoch 1's is kept
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


def test_empty_split_fails_clearly_and_the_run_resumes_once_fixed(workspace, tmp_path):
    model = SequenceClassifier(BertModel.from_pretrained(workspace.model), num_labels=2)
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
