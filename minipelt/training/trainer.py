"""The training loop for GLUE in the paper's few-shot protocol, as a library a test can call.

    run = TrainConfig(task="stsb", k=100, method="unipelt", model="minilm")
    results = train(run)          # writes results.json, best.safetensors into run.output_dir

AdamW (0.9, 0.999, eps 1e-8), linear warm-up and decay, gradient clipping; a dev evaluation
every epoch (or `eval_every` steps) and at the last step, early stopping after `patience` of them
without improvement; the best checkpoint (trainable parameters) is kept and tested at the end.

Reliability: every check (task, model, method, data, options) runs before the output directory is
touched; nothing non-finite is ever kept (a best checkpoint, a resume state); the resume state is
saved every `save_every` steps and at each epoch end, and a run killed anywhere resumes to the
uninterrupted run's results (runstate.py).
"""
import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm import tqdm

from minipelt import textbook
from minipelt.data.fewshot import EncodedSplit, batches, encode_split, few_shot, num_batches
from minipelt.data.files import load_task_split, run_task
from minipelt.data.glue import Task
from minipelt.data.tokenizer import Tokenizer
from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import mark_trainable
from minipelt.summary import report
from minipelt.training import distributed, runstate
from minipelt.training.checkpoint import atomic_write, load_trainable, read_metadata, save_trainable
from minipelt.training.config import TrainConfig
from minipelt.training.device import autocast, resolve_device
from minipelt.training.evaluation import evaluate, sequence_length
from minipelt.weights import declared_pooling, resolve_model


def build_model(run: TrainConfig, task: Task, device: torch.device) -> tuple[SequenceClassifier, Tokenizer]:
    """The pretrained BERT with the run's method and a new task head, trainable parameters marked; its tokenizer."""
    model_dir = resolve_model(run.model)
    bert = BertModel.from_pretrained(model_dir, run.pelt())
    model = SequenceClassifier(bert, task.num_labels, run.pooling or declared_pooling(model_dir)).to(device)
    mark_trainable(model, bert.pelt)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    tokenizer.check_fits(bert.config.vocab_size, model_dir)
    return model, tokenizer


def param_groups(model: SequenceClassifier, run: TrainConfig) -> list[dict]:
    """The trainable parameters; the prefix MLP in a group of its own when --prefix-lr is set."""
    prefix = set(model.bert.prefix.parameters()) if model.bert.prefix is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if run.prefix_lr is None or not prefix:
        return [{"params": trainable}]
    return [{"params": [p for p in trainable if p not in prefix]},
            {"params": [p for p in trainable if p in prefix], "lr": run.prefix_lr}]


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    warmup = max(1, int(warmup_ratio * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))))


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 1:  # regression (STS-B)
        return F.mse_loss(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def train_step(t: "Training", batch) -> torch.Tensor:
    """One optimizer step on a global batch (this rank's slice of it); returns the detached loss."""
    rows = len(batch["labels"])  # of the global batch
    batch = {k: v.to(t.device) for k, v in t.dist.shard(batch).items()}
    with autocast(t.device, t.run.precision):
        logits = t.ddp_model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    # DDP averages the ranks' gradients: weighting each slice's mean loss by its share of the
    # rows makes that average the global batch mean, also for an unevenly split last batch.
    loss = loss_fn(logits, batch["labels"]) * (len(batch["labels"]) * t.dist.world_size / rows)
    t.scaler.scale(loss).backward()
    t.scaler.unscale_(t.optimizer)
    if t.run.max_grad_norm > 0:  # 0: no clipping (the Hugging Face convention)
        torch.nn.utils.clip_grad_norm_(t.params, t.run.max_grad_norm)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    t.scheduler.step()
    return loss.detach()


def stop_non_finite(what: str, step: int, out: Path) -> None:
    raise FloatingPointError(
        f"{what} became NaN or inf at step {step}; training stopped. The best checkpoint so far and the "
        f"last saved state are kept in {out}. Try a lower --lr, or --precision fp32.")


def check_finite(first_bad_step: torch.Tensor, out: Path) -> None:
    """Stop if a loss so far was not finite (first_bad_step >= 0)."""
    if (step := int(first_bad_step)) >= 0:
        stop_non_finite("the loss", step, out)


def check_finite_parameters(t: "Training", first_bad_step: torch.Tensor) -> None:
    """Before anything is kept (a best checkpoint, a resume state): the loss so far and the trainable
    parameters are finite. The loss alone is not enough: it is computed before the step that breaks them."""
    check_finite(first_bad_step, t.out)
    if not torch.stack([torch.isfinite(p).all() for p in t.params]).all():
        stop_non_finite("the trainable parameters", t.state.step, t.out)


@dataclass
class Training:
    """What one run trains with, built and checked before its output directory is touched."""
    run: TrainConfig
    out: Path
    dist: distributed.Context
    device: torch.device
    task: Task
    model: SequenceClassifier
    tokenizer: Tokenizer
    train_set: EncodedSplit
    dev_set: EncodedSplit
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    state: runstate.RunState = field(default_factory=runstate.RunState)
    ddp_model: torch.nn.Module | None = None

    @property
    def steps_per_epoch(self) -> int:
        return num_batches(len(self.train_set), self.run.batch_size)


def run_device(run: TrainConfig, dist: distributed.Context) -> torch.device:
    """--device, or under torchrun the process's own device (then a --device given is ignored, said so)."""
    if dist.world_size == 1:
        return resolve_device(run.device)
    if run.device != "auto" and dist.is_main:
        print(f"note: under torchrun each process takes its own device ({dist.device.type}, one per local rank); "
              f"--device {run.device} is ignored")
    return dist.device


def set_up(run: TrainConfig, out: Path, dist: distributed.Context, device: torch.device) -> Training:
    """Task, model, method, data and optimizer: every check of the run, nothing written yet."""
    torch.manual_seed(run.seed)  # the same initialisation on every rank
    task = run_task(run)  # a GLUE task, or your own files
    model, tokenizer = build_model(run, task, device)
    if dist.rank > 0:  # but each rank its own dropout masks; rank 0 draws those of a single process
        torch.manual_seed(run.seed + dist.rank)
    length = sequence_length(run.max_seq_length, model)
    train_all = encode_split(load_task_split(task, "train", run.data_dir), tokenizer, length)
    dev_file = encode_split(load_task_split(task, "dev"), tokenizer, length) if "dev" in task.split_names else None
    train_set, dev_set = few_shot(train_all, run.k, run.seed, run.dev_size, dev=dev_file)
    dist.check_batches(len(train_set), run.batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, run), lr=run.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=run.weight_decay)
    scheduler = linear_schedule(optimizer, num_batches(len(train_set), run.batch_size) * run.epochs,
                                run.warmup_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=run.precision == "fp16")
    return Training(run, out, dist, device, task, model, tokenizer, train_set, dev_set,
                    [p for p in model.parameters() if p.requires_grad], optimizer, scheduler, scaler)


def resume(t: Training) -> None:
    """Continue from the resume state in the output directory, if any, after checking it and the best
    checkpoint can be read (not after the remaining steps have trained)."""
    if not (t.out / runstate.STATE_FILE).exists():
        return
    t.state = runstate.load(t.out, t.model, t.optimizer, t.scheduler, t.scaler, t.dist.rank, t.dist.world_size)
    if t.state.best_step > 0:
        check_best_checkpoint(t.out / runstate.BEST_FILE)
    if t.dist.is_main:
        print(f"resuming from epoch {t.state.epoch} (step {t.state.step}, best dev {t.state.best_score})")


def check_best_checkpoint(path: Path) -> None:
    """The best checkpoint that a resume state counts on is there and readable."""
    try:
        read_metadata(path)
        load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise runstate.damaged(path, e) from e


def save_state(t: Training, first_bad_step: torch.Tensor) -> None:
    """The resume state (rank 0 writes every rank's generators); never one that a NaN has reached."""
    check_finite_parameters(t, first_bad_step)
    rng_states = t.dist.gather(runstate.rng_state())  # to resume every rank's dropout masks
    if t.dist.is_main:
        runstate.save(t.out, t.run, t.state, t.model, t.optimizer, t.scheduler, t.scaler, rng_states)


def evaluate_dev(t: Training, first_bad_step: torch.Tensor) -> None:
    """A dev evaluation: its history entry, the best checkpoint if it is the best, early stopping."""
    check_finite_parameters(t, first_bad_step)  # a non-finite model is never evaluated, let alone kept
    state, main_metric = t.state, t.task.main_metric
    evaluation = evaluate(t.model, t.dev_set, t.task, t.run.eval_batch_size, t.device, t.run.precision,
                          prefix_share=True) if t.dist.is_main else None
    dev, gates, shares = t.dist.broadcast(evaluation)  # every rank takes the same early-stopping decision
    state.history.append(runstate.history_entry(state.step, dev, gates, shares))
    if state.record(dev[main_metric], dev) and t.dist.is_main:
        save_trainable(t.model, t.out / runstate.BEST_FILE)  # the best checkpoint so far
    state.stopped = state.bad_evaluations >= t.run.patience  # early stopping
    if t.dist.is_main:
        tqdm.write(f"step {state.step}: dev {main_metric} {dev[main_metric]:.4f} (best "
                   f"{state.best_score:.4f} at step {state.best_step})" + (" -> early stop" if state.stopped else ""))
    t.model.train()


def train_epoch(t: Training, epoch: int) -> None:
    """The epoch's remaining steps (all of them, unless a resumed run stopped inside it), with the dev
    evaluations and resume states that fall into it."""
    run, state, per_epoch = t.run, t.state, t.steps_per_epoch
    total_steps, eval_every = per_epoch * run.epochs, run.eval_every or per_epoch
    done = state.step - epoch * per_epoch  # steps of this epoch trained before an interruption
    t.model.train()
    order = torch.Generator().manual_seed(run.seed * 100_003 + epoch)  # the same batches on resume
    remaining = itertools.islice(batches(t.train_set, run.batch_size, shuffle=True, generator=order), done, None)
    # A bar on a terminal only (disable=None): a log file gets the evaluation lines alone.
    bar = tqdm(remaining, total=per_epoch, initial=done, desc=f"epoch {epoch + 1}/{run.epochs}",
               disable=None if t.dist.is_main else True, leave=False)
    first_bad_step = torch.tensor(-1, device=t.device)  # first non-finite loss, tracked without a host sync
    for batch in bar:
        loss = train_step(t, batch)
        state.step += 1
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), state.step, first_bad_step)
        if state.step % 10 == 0:  # reading the loss syncs with the device: not every step
            check_finite(first_bad_step, t.out)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if state.step % eval_every == 0 or state.step == total_steps:  # the last step is always evaluated
            evaluate_dev(t, first_bad_step)
            if state.stopped:
                break
        if state.step % run.save_every == 0:
            save_state(t, first_bad_step)
    bar.close()
    state.epoch = epoch + 1
    save_state(t, first_bad_step)


def train(run: TrainConfig, overwrite: bool = False) -> dict:
    """Train one run (one task, K, method, seed); returns and writes its results.json."""
    with textbook(run.textbook):  # --textbook: the model's textbook functions, no kernels
        return train_on_its_path(run, overwrite)


def train_on_its_path(run: TrainConfig, overwrite: bool) -> dict:
    run = run.resolved()
    out = Path(run.output_dir)
    dist = distributed.context()
    device = run_device(run, dist)
    # Rank 0 reads the directory; the broadcast lets every rank skip a finished run together (one rank
    # alone would leave the rest waiting).
    finished = dist.broadcast(runstate.previous_run(out, run, overwrite) if dist.is_main else None)
    if finished is not None:
        if dist.is_main:
            print(f"{out}: this run already finished (results.json); pass --overwrite to run it again")
        return finished if dist.is_main else {}
    t = set_up(run, out, dist, device)
    if dist.is_main:  # every check has passed: only now is the output directory touched
        runstate.start_output_dir(out, overwrite)
    dist.barrier()  # the other ranks wait for it
    resume(t)
    if dist.is_main:
        print(f"{t.task.name} K={run.k} seed={run.seed}: {len(t.train_set)} train, {len(t.dev_set)} dev; "
              f"method {t.model.bert.pelt.name}, pooling {t.model.pooling}, device {device}, lr {run.lr}")
        print(report(t.model))
    t.ddp_model = dist.wrap(t.model)
    start = time.time()
    for epoch in range(t.state.epoch, run.epochs):
        if t.state.stopped:
            break
        train_epoch(t, epoch)
    dist.barrier()
    if not dist.is_main:
        return {}
    return finish(run, t.task, t.model, t.tokenizer, device, t.state, time.time() - start, out)


def finish(run, task, model, tokenizer, device, state, seconds, out: Path) -> dict:
    """Evaluate the best checkpoint on the test set(s) and write results.json."""
    load_trainable(model, out / runstate.BEST_FILE)
    tests, gates = {}, {}
    for name in task.test_files:
        try:
            split = load_task_split(task, name, run.data_dir)
        except FileNotFoundError as e:
            print(f"skipping test set {name}: {e}")
            continue
        encoded = encode_split(split, tokenizer, sequence_length(run.max_seq_length, model))
        tests[name], gates[name], _ = evaluate(model, encoded, task, run.eval_batch_size, device, run.precision)
    results = {
        "task": task.name, "method": run.method, "k": run.k, "seed": run.seed, "model": run.model,
        "pooling": model.pooling, "dev": state.best_metrics, "best_step": state.best_step,
        **tests, "gates": gates.get("test", {}),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": state.step, "wall_seconds": round(seconds, 1), "options": dataclasses.asdict(run),
        "history": state.history,
    }
    results = runstate.json_safe(results)
    text = json.dumps(results, indent=2, allow_nan=False)
    atomic_write(out / runstate.RESULTS_FILE, lambda tmp: tmp.write_text(text))
    (out / runstate.STATE_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    print(f"{task.name} {run.method} K={run.k} seed={run.seed}: dev {state.best_metrics}, test {tests.get('test')}")
    return results
