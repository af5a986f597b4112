"""Data parallelism: `torchrun --nproc_per_node 2 train.py` on CPU (gloo) trains exactly like `python train.py`.

Both runs use the same global batch (8) and seed on a tiny BERT without dropout, so the only
difference is that two processes each compute half of every batch and DDP averages their
gradients. K = 43 makes the last batch of each epoch 3 rows, split 2 + 1 over the ranks: the
trainer's weighting of each slice's loss must make that exact too. Same dev and test metrics, same
best step, same best checkpoint, up to float rounding; and re-running the finished command under
torchrun must skip it on every rank (not leave one rank waiting for the other).
"""
import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import tiny_glue
import torch
from conftest import TINY, write_tiny_bert
from safetensors.torch import load_file

from minipelt.training import device, runstate
from minipelt.training.distributed import Context
from minipelt.training.trainer import train

NO_DROPOUT = dataclasses.replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# torchrun output that means it could not start its processes here (not that training went wrong)
CANNOT_LAUNCH = ("DistNetworkError", "Address already in use", "connectFullMesh", "RendezvousConnectionError")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    model = root / "model"
    write_tiny_bert(model, NO_DROPOUT)
    (model / "vocab.txt").write_text("\n".join(tiny_glue.SPECIAL + tiny_glue.WORDS) + "\n")
    return SimpleNamespace(model=model, glue=tiny_glue.write_task(root / "glue", "stsb"), root=root)


def train_args(tiny, output_dir) -> list[str]:
    """K = 43, batch 8: 6 steps an epoch, the 6th on 3 rows; evaluated after each epoch, so every
    checkpoint has seen uneven batches; patience 1 lets the broadcast dev metrics stop training early."""
    return tiny_glue.cli_args(tiny.model, tiny.glue, output_dir, "--k", "43", "--epochs", "3", "--eval-every", "6",
                              "--patience", "1")


def torchrun(args: list[str], ends_with: str | None = None) -> subprocess.CompletedProcess:
    """train.py under torchrun with 2 gloo processes; skips the test only if torchrun cannot start them.
    ends_with: the error message the run is meant to end with, if it is meant to fail."""
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(tiny_glue.REPO / "train.py"), *args]
    result = subprocess.run(command, cwd=tiny_glue.REPO, env=tiny_glue.ONE_THREAD, capture_output=True, text=True,
                            timeout=300)
    output = result.stdout + result.stderr
    if result.returncode != 0 and (ends_with is None or ends_with not in output):
        reason = next((s for s in CANNOT_LAUNCH if s in output), None)
        if reason is not None:
            pytest.skip(f"torchrun could not start 2 processes on this machine ({reason})")
        pytest.fail(f"torchrun train.py failed (exit {result.returncode}):\n{output[-4000:]}")
    return result


@pytest.fixture(scope="module")
def runs(tiny):
    """(one process, two processes): each run's output directory (seed1)."""
    one, two = tiny.root / "one", tiny.root / "two"
    single = tiny_glue.run_script("train.py", *train_args(tiny, one), timeout=300)
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-4000:]
    torchrun(train_args(tiny, two))
    return one / "seed1", two / "seed1"


def results(directory) -> dict:
    return json.loads((directory / runstate.RESULTS_FILE).read_text())


def test_two_processes_reach_the_same_metrics_as_one(runs):
    one, two = (results(d) for d in runs)
    assert (one["steps"], one["best_step"]) == (two["steps"], two["best_step"])
    for split in ("dev", "test"):
        assert one[split].keys() == two[split].keys()
        for metric in one[split]:
            # rounding differs by a few 1e-6 here (measured: 1.6e-6 on a Pearson of 0.072); the unweighted
            # loss of an uneven batch differs by ~1e-4
            assert two[split][metric] == pytest.approx(one[split][metric], rel=2e-5, abs=5e-6), (split, metric)


def test_two_processes_keep_the_same_best_checkpoint_as_one(runs):
    one, two = (load_file(str(d / runstate.BEST_FILE)) for d in runs)
    assert one.keys() == two.keys() and one
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_finished_run_is_skipped_on_every_rank(tiny, runs):
    before = (runs[1] / runstate.RESULTS_FILE).read_text()
    rerun = torchrun(train_args(tiny, tiny.root / "two"))
    assert "already finished" in rerun.stdout
    assert (runs[1] / runstate.RESULTS_FILE).read_text() == before


def test_each_rank_draws_its_own_dropout_masks_and_keeps_its_rng_for_resume(tmp_path):
    """With dropout on, the ranks must not draw the same masks: each rank's RNG is seeded apart after
    the shared initialisation, and the resume state keeps every rank's RNG. A header-only test file
    makes the run fail after training, so its state file stays to be read."""
    model = tmp_path / "model"
    write_tiny_bert(model)  # dropout 0.1
    (model / "vocab.txt").write_text("\n".join(tiny_glue.SPECIAL + tiny_glue.WORDS) + "\n")
    glue = tiny_glue.write_task(tmp_path / "glue", "stsb")
    tiny_glue.write_rows(glue / "STS-B" / "dev.tsv", tiny_glue.HEADERS["stsb"], [])
    args = tiny_glue.cli_args(model, glue, tmp_path / "out", "--k", "40", "--epochs", "1")  # 5 batches of 4 + 4
    torchrun(args, ends_with="cannot evaluate on an empty split")
    state = load_file(str(tmp_path / "out" / "seed1" / runstate.STATE_FILE))
    assert {"rng.0.cpu", "rng.1.cpu"} <= state.keys()
    # Equal slices (4 + 4 rows) draw equally many numbers: only different seeds give different states.
    assert not torch.equal(state["rng.0.cpu"], state["rng.1.cpu"])


def test_a_single_process_state_is_not_resumed_by_two_processes(tiny, tmp_path):
    """Interrupted under `python train.py` (a header-only test file fails it after training, keeping its
    state), then run again under torchrun with 2 processes: a clear error before any rank trains, the
    state untouched (it used to fail on rank 1 with KeyError: 'rng.1.cpu' and a closed gloo connection)."""
    glue = tiny_glue.write_task(tmp_path / "glue", "stsb")
    tiny_glue.write_rows(glue / "STS-B" / "dev.tsv", tiny_glue.HEADERS["stsb"], [])
    args = tiny_glue.cli_args(tiny.model, glue, tmp_path / "out", "--k", "40", "--epochs", "1")
    single = tiny_glue.run_script("train.py", *args)
    assert "cannot evaluate on an empty split" in single.stderr
    state = tmp_path / "out" / "seed1" / runstate.STATE_FILE
    before = state.read_bytes()
    message = "was written by a run with 1 process(es), this one has 2: resume it with 1 (python train.py)"
    result = torchrun(args, ends_with=message)
    assert result.returncode != 0 and "step " not in result.stdout
    assert state.read_bytes() == before


def test_a_rank_takes_its_contiguous_slice_of_the_global_batch():
    batch = {"input_ids": torch.arange(14).reshape(7, 2), "labels": torch.arange(7)}
    slices = [Context(rank, 3).shard(batch) for rank in range(3)]
    assert [len(s["labels"]) for s in slices] == [3, 2, 2]
    for key in batch:
        assert torch.equal(torch.cat([s[key] for s in slices]), batch[key])


def test_a_batch_too_small_to_give_every_rank_a_row_is_refused():
    Context(0, 2).check_batches(43, 8)  # the last batch holds 3: 2 + 1
    Context(0, 1).check_batches(41, 8)  # one process takes any batch
    with pytest.raises(ValueError, match="cannot be split over 2 processes"):
        Context(0, 2).check_batches(41, 8)  # the last batch holds 1: a rank would get none
    with pytest.raises(ValueError, match="cannot be split over 4 processes"):
        Context(0, 4).check_batches(40, 2)


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
def test_fp16_on_cpu_is_a_clear_error(tiny, tmp_path):
    run = tiny_glue.config(tiny.model, tiny.glue, tmp_path / "out", precision="fp16", epochs=1)
    with pytest.raises(ValueError, match="--precision fp16 needs a CUDA device"):
        train(run)


def test_bf16_on_a_cpu_without_bf16_is_a_clear_error(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    run = tiny_glue.config(tiny.model, tiny.glue, tmp_path / "out", precision="bf16", epochs=1)
    with pytest.raises(ValueError, match="no native bf16 arithmetic"):
        train(run)


@pytest.mark.skipif(not device.cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_trains_and_evaluates_on_cpu(tiny, tmp_path):
    results = train(tiny_glue.config(tiny.model, tiny.glue, tmp_path / "out", precision="bf16", epochs=2,
                                     method="unipelt"))
    assert np.isfinite(results["test"]["spearman"]) and results["options"]["precision"] == "bf16"
