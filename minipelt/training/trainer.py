"""The training loop for GLUE in the paper's few-shot protocol, as a library a test can call.

    run = TrainConfig(task="stsb", k=100, method="unipelt", model="minilm")
    results = train(run)          # writes results.json, best.safetensors into run.output_dir

AdamW (0.9, 0.999, eps 1e-8), linear warm-up and decay, gradient clipping; a dev evaluation
every epoch (or `eval_every` steps) and at the last step, early stopping after `patience` of them
without improvement; the best checkpoint (trainable parameters) is kept and tested at the end.
"""
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from minipelt import textbook
from minipelt.training import distributed, runstate
from minipelt.model.bert import BertModel
from minipelt.training.checkpoint import atomic_write, load_trainable, save_trainable
from minipelt.model.classifier import SequenceClassifier
from minipelt.training.config import TrainConfig
from minipelt.training.device import autocast, resolve_device
from minipelt.training.evaluation import evaluate, sequence_length
from minipelt.data.fewshot import batches, encode_split, few_shot, num_batches
from minipelt.data.files import load_task_split, run_task
from minipelt.data.glue import Task
from minipelt.model.methods import mark_trainable
from minipelt.summary import report
from minipelt.data.tokenizer import Tokenizer
from minipelt.weights import declared_pooling, resolve_model


def build_model(run: TrainConfig, task: Task, device: torch.device) -> tuple[SequenceClassifier, Tokenizer]:
    """The pretrained BERT with the run's method and a new task head, trainable parameters marked; its tokenizer."""
    model_dir = resolve_model(run.model)
    bert = BertModel.from_pretrained(model_dir, run.pelt())
    model = SequenceClassifier(bert, task.num_labels, run.pooling or declared_pooling(model_dir)).to(device)
    mark_trainable(model, bert.pelt)
    return model, Tokenizer.from_pretrained(model_dir)


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


def train_step(ddp_model, batch, dist, device, run, params, optimizer, scheduler, scaler) -> torch.Tensor:
    """One optimizer step on a global batch (this rank's slice of it); returns the detached loss."""
    rows = len(batch["labels"])  # of the global batch
    batch = {k: v.to(device) for k, v in dist.shard(batch).items()}
    with autocast(device, run.precision):
        logits = ddp_model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    # DDP averages the ranks' gradients: weighting each slice's mean loss by its share of the
    # rows makes that average the global batch mean, also for an unevenly split last batch.
    loss = loss_fn(logits, batch["labels"]) * (len(batch["labels"]) * dist.world_size / rows)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, run.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return loss.detach()


def check_finite(first_bad_step: torch.Tensor, out: Path) -> None:
    step = int(first_bad_step)
    if step >= 0:
        raise FloatingPointError(
            f"the loss became NaN or inf at step {step}; training stopped. The best checkpoint so far and the "
            f"last epoch's state are kept in {out}. Try a lower --lr, or --precision fp32.")


def train(run: TrainConfig, overwrite: bool = False) -> dict:
    """Train one run (one task, K, method, seed); returns and writes its results.json."""
    with textbook(run.textbook):  # --textbook: the model's textbook functions, no kernels
        return train_on_its_path(run, overwrite)


def train_on_its_path(run: TrainConfig, overwrite: bool) -> dict:
    run = run.resolved()
    out = Path(run.output_dir)
    dist = distributed.context()
    device = dist.device if dist.world_size > 1 else resolve_device(run.device)
    # Rank 0 prepares the directory; the broadcast also makes the other ranks wait for that, and
    # lets every rank skip a finished run together (one rank alone would leave the rest waiting).
    finished = dist.broadcast(runstate.prepare_output_dir(out, run, overwrite) if dist.is_main else None)
    if finished is not None:
        if dist.is_main:
            print(f"{out}: this run already finished (results.json); pass --overwrite to run it again")
        return finished if dist.is_main else {}
    torch.manual_seed(run.seed)  # the same initialisation on every rank
    task = run_task(run)  # a GLUE task, or your own files
    model, tokenizer = build_model(run, task, device)
    if dist.rank > 0:  # but each rank its own dropout masks; rank 0 draws those of a single process
        torch.manual_seed(run.seed + dist.rank)
    length = sequence_length(run.max_seq_length, model)
    train_all = encode_split(load_task_split(task, "train", run.data_dir), tokenizer, length)
    dev_file = encode_split(load_task_split(task, "dev"), tokenizer, length) if "dev" in task.split_names else None
    train_set, dev_set = few_shot(train_all, run.k, run.seed, run.dev_size, dev=dev_file)
    if dist.is_main:
        print(f"{task.name} K={run.k} seed={run.seed}: {len(train_set)} train, {len(dev_set)} dev; "
              f"method {model.bert.pelt.name}, pooling {model.pooling}, device {device}, lr {run.lr}")
        print(report(model))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, run), lr=run.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=run.weight_decay)
    steps_per_epoch = num_batches(len(train_set), run.batch_size)
    dist.check_batches(len(train_set), run.batch_size)
    total_steps = steps_per_epoch * run.epochs
    scheduler = linear_schedule(optimizer, total_steps, run.warmup_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=run.precision == "fp16")
    state = runstate.RunState()
    if (out / runstate.STATE_FILE).exists():
        state = runstate.load(out, model, optimizer, scheduler, scaler, dist.rank)
        if dist.is_main:
            print(f"resuming from epoch {state.epoch} (step {state.step}, best dev {state.best_score})")
    ddp_model = dist.wrap(model)

    start = time.time()
    eval_every = run.eval_every or steps_per_epoch
    first_bad_step = torch.tensor(-1, device=device)  # first non-finite loss, tracked without a host sync
    for epoch in range(state.epoch, run.epochs):
        if state.stopped:
            break
        model.train()
        order = torch.Generator().manual_seed(run.seed * 100_003 + epoch)  # same batches on resume
        # A bar on a terminal only (disable=None): a log file gets the evaluation lines alone.
        bar = tqdm(batches(train_set, run.batch_size, shuffle=True, generator=order), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{run.epochs}", disable=None if dist.is_main else True, leave=False)
        for batch in bar:
            loss = train_step(ddp_model, batch, dist, device, run, params, optimizer, scheduler, scaler)
            state.step += 1
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), state.step, first_bad_step)
            if state.step % 10 == 0:  # reading the loss syncs with the device: not every step
                check_finite(first_bad_step, out)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if state.step % eval_every == 0 or state.step == total_steps:  # the last step is always evaluated
                check_finite(first_bad_step, out)
                dev = evaluate(model, dev_set, task, run.eval_batch_size, device, run.precision)[0] \
                    if dist.is_main else None
                dev = dist.broadcast(dev)  # every rank takes the same early-stopping decision
                if state.record(dev[task.main_metric], dev) and dist.is_main:
                    save_trainable(model, out / runstate.BEST_FILE)  # the best checkpoint so far
                state.stopped = state.bad_evaluations >= run.patience  # early stopping
                if dist.is_main:
                    tqdm.write(f"step {state.step}: dev {task.main_metric} {dev[task.main_metric]:.4f} (best "
                               f"{state.best_score:.4f} at step {state.best_step})"
                               + (" -> early stop" if state.stopped else ""))
                model.train()
                if state.stopped:
                    break
        bar.close()
        check_finite(first_bad_step, out)  # never save a state that a NaN has reached
        state.epoch = epoch + 1
        rng_states = dist.gather(runstate.rng_state())  # to resume every rank's dropout masks
        if dist.is_main:
            runstate.save(out, run, state, model, optimizer, scheduler, scaler, rng_states)
    dist.barrier()
    if not dist.is_main:
        return {}
    return finish(run, task, model, tokenizer, device, state, time.time() - start, out)


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
        tests[name], gates[name] = evaluate(model, encoded, task, run.eval_batch_size, device, run.precision)
    results = {
        "task": task.name, "method": run.method, "k": run.k, "seed": run.seed, "model": run.model,
        "pooling": model.pooling, "dev": state.best_metrics, "best_step": state.best_step,
        **tests, "gates": gates.get("test", {}),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": state.step, "wall_seconds": round(seconds, 1), "options": dataclasses.asdict(run),
    }
    atomic_write(out / runstate.RESULTS_FILE, lambda tmp: tmp.write_text(json.dumps(results, indent=2)))
    (out / runstate.STATE_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    print(f"{task.name} {run.method} K={run.k} seed={run.seed}: dev {state.best_metrics}, test {tests.get('test')}")
    return results
