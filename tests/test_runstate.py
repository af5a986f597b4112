"""The resume state (minipelt/training/runstate.py) round-trips what a resumed run needs beyond the weights:
every process's random number generators (its dropout masks) and the fp16 gradient scaler."""
import dataclasses

import pytest
import torch
from conftest import TINY

from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import PeltConfig, mark_trainable
from minipelt.training import runstate
from minipelt.training.config import TrainConfig


def training_objects(scaler_scale: float):
    torch.manual_seed(0)
    model = SequenceClassifier(BertModel(TINY, PeltConfig.from_method("lora")), num_labels=2)
    mark_trainable(model, model.bert.pelt)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale(torch.ones(1))  # the scale exists from the first scaled loss on
    scaler.update(new_scale=scaler_scale)
    return model, optimizer, scheduler, scaler


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resume_restores_each_ranks_rng_and_the_fp16_scaler(tmp_path):
    model, optimizer, scheduler, scaler = training_objects(scaler_scale=256.0)
    ranks = []
    for seed in (1, 2):  # two processes whose dropout generators differ
        torch.manual_seed(seed)
        torch.rand(3)
        ranks.append(runstate.rng_state())
    run = TrainConfig(task="stsb", k=10)
    runstate.save(tmp_path, run, runstate.RunState(epoch=1, step=5), model, optimizer, scheduler, scaler, ranks)

    for rank in (0, 1):
        model, optimizer, scheduler, fresh_scaler = training_objects(scaler_scale=65536.0)
        torch.manual_seed(99)
        state = runstate.load(tmp_path, model, optimizer, scheduler, fresh_scaler, rank, world_size=2)
        assert dataclasses.astuple(state)[:2] == (1, 5)
        assert torch.equal(torch.get_rng_state(), ranks[rank]["cpu"]), f"rank {rank} got another rank's RNG"
        assert fresh_scaler.state_dict() == scaler.state_dict() and fresh_scaler.get_scale() == 256.0


def test_a_state_file_of_the_previous_format_still_resumes(tmp_path):
    """Before per-rank generators and the scaler were saved, the state held rng.cpu and no "scaler":
    an interrupted run from then must still resume (rank 0 takes those generators)."""
    from safetensors.torch import load_file, safe_open, save_file

    model, optimizer, scheduler, scaler = training_objects(scaler_scale=256.0)
    torch.manual_seed(7)
    rng = runstate.rng_state()
    runstate.save(tmp_path, TrainConfig(task="stsb", k=10), runstate.RunState(epoch=2, step=9), model, optimizer,
                  scheduler, scaler, [rng])
    path = tmp_path / runstate.STATE_FILE
    tensors = {("rng.cpu" if k == "rng.0.cpu" else k): v for k, v in load_file(str(path)).items()}
    with safe_open(str(path), "pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k != "scaler"}
    save_file(tensors, str(path), metadata)

    model, optimizer, scheduler, fresh_scaler = training_objects(scaler_scale=65536.0)
    torch.manual_seed(99)
    state = runstate.load(tmp_path, model, optimizer, scheduler, fresh_scaler)
    assert dataclasses.astuple(state)[:2] == (2, 9) and torch.equal(torch.get_rng_state(), rng["cpu"])


@pytest.mark.parametrize("saved, resumed", [(2, 1), (1, 2), (1, 3)])
def test_a_state_resumes_only_under_the_number_of_processes_that_wrote_it(tmp_path, saved, resumed):
    """Every rank's dropout generator continues its own stream, and the batches split over as many
    processes: under another number the run could not continue exactly, so it stops before training."""
    model, optimizer, scheduler, scaler = training_objects(scaler_scale=256.0)
    runstate.save(tmp_path, TrainConfig(task="stsb", k=10), runstate.RunState(epoch=1, step=5), model, optimizer,
                  scheduler, scaler, [runstate.rng_state() for _ in range(saved)])
    hint = "python train.py" if saved == 1 else f"torchrun --nproc_per_node {saved}"
    with pytest.raises(ValueError, match=f"written by a run with {saved} process\\(es\\), this one has {resumed}: "
                                         f"resume it with {saved} \\({hint}\\), or pass --overwrite"):
        runstate.load(tmp_path, *training_objects(scaler_scale=1.0), rank=0, world_size=resumed)


def test_the_world_size_of_a_state_from_before_it_was_recorded_is_read_from_its_generators(tmp_path):
    from safetensors.torch import load_file, safe_open, save_file

    model, optimizer, scheduler, scaler = training_objects(scaler_scale=256.0)
    runstate.save(tmp_path, TrainConfig(task="stsb", k=10), runstate.RunState(epoch=1, step=5), model, optimizer,
                  scheduler, scaler, [runstate.rng_state() for _ in range(2)])
    path = tmp_path / runstate.STATE_FILE
    with safe_open(str(path), "pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k != "world_size"}
    save_file(load_file(str(path)), str(path), metadata)
    with pytest.raises(ValueError, match="written by a run with 2 process"):
        runstate.load(tmp_path, *training_objects(scaler_scale=1.0), world_size=1)
    assert runstate.load(tmp_path, *training_objects(scaler_scale=1.0), rank=1, world_size=2).step == 5
