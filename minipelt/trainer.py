"""The training loop for GLUE in the paper's few-shot protocol, as a library a test can call.

    run = TrainConfig(task="stsb", k=100, method="unipelt", model="minilm")
    results = train(run)          # writes results.json, best.safetensors into run.output_dir

AdamW (0.9, 0.999, eps 1e-8), linear warm-up then linear decay, gradient clipping at 1.0,
evaluation on the dev split every epoch (or every `eval_every` steps), early stopping after
`patience` evaluations without improvement, the best checkpoint (trainable parameters only)
kept, and the best checkpoint finally evaluated on the test set(s).
"""
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from minipelt import data, distributed, runstate
from minipelt.bert import BertModel
from minipelt.checkpoint import atomic_write, load_trainable
from minipelt.classifier import SequenceClassifier
from minipelt.metrics import compute_metrics
from minipelt.methods import PeltConfig, mark_trainable, parameter_kind
from minipelt.summary import report
from minipelt.tokenizer import Tokenizer
from minipelt.weights import resolve_model

@dataclass(frozen=True)
class MethodDefaults:
    lr: float
    epochs: int = 30
    prefix_lr: float | None = None  # the prefix MLP's rate, if not lr


# Chosen by the dev-split sweep in the README (STS-B, K = 100, MiniLM). The prefix MLP needs a
# rate ~10x lower than adapters and LoRA: at 1e-3 its output grows until the prefix takes the
# attention over and UniPELT stops learning (dev Spearman 0.21 vs 0.72 with prefix_lr 1e-4).
METHOD_DEFAULTS = {
    "finetune": MethodDefaults(5e-5),
    "bitfit": MethodDefaults(5e-3),
    "adapter": MethodDefaults(1e-3),
    "prefix": MethodDefaults(1e-3, prefix_lr=1e-4),
    "lora": MethodDefaults(1e-3),
    "unipelt-ap": MethodDefaults(1e-3, prefix_lr=1e-4),
    "unipelt": MethodDefaults(1e-3, prefix_lr=1e-4),
}


@dataclass(frozen=True)
class TrainConfig:
    task: str
    k: int | None  # training examples per seed; None = the full training set
    method: str = "unipelt"
    model: str = "bert-base-uncased"  # a fetched name or a directory
    seed: int = 42
    lr: float | None = None  # None: the method's default
    prefix_lr: float | None = None  # the prefix MLP's own rate; None: the method's default (else lr)
    epochs: int | None = None  # None: the method's default
    batch_size: int = 16
    eval_batch_size: int = 64
    max_seq_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int | None = None  # steps between dev evaluations; None = once an epoch
    patience: int = 10  # early stopping: evaluations without improvement
    dev_size: int = 1000
    pooling: str | None = None  # "cls" | "mean"; None: what the checkpoint declares, else cls
    device: str = "auto"
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (CUDA only)
    data_dir: str | None = None
    output_dir: str = "runs/run"
    method_options: dict = field(default_factory=dict)  # PeltConfig overrides, e.g. {"lora_r": 4}

    def resolved(self) -> "TrainConfig":
        """Fill in the per-method defaults, so results.json records what actually ran."""
        default = METHOD_DEFAULTS.get(self.method, METHOD_DEFAULTS["unipelt"])
        return dataclasses.replace(self, lr=self.lr or default.lr, epochs=self.epochs or default.epochs,
                                   prefix_lr=self.prefix_lr or default.prefix_lr)

    def pelt(self) -> PeltConfig:
        return PeltConfig.from_method(self.method, **self.method_options)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device (a CPU-only "
                           "torch build or no GPU): use --device cpu or --device auto")
    return torch.device(name)


def declared_pooling(model_dir: Path) -> str:
    """'mean' for sentence-transformers checkpoints that declare it (1_Pooling/config.json), else 'cls'."""
    pooling_file = model_dir / "1_Pooling" / "config.json"
    if pooling_file.is_file() and json.loads(pooling_file.read_text()).get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls"


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (x86 AVX512-BF16 or AMX, Arm BF16): there autocast to bf16 is ~1.5-2x
    faster than fp32 on CPU; without it bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: ask oneDNN
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ValueError("--precision bf16: this CPU has no native bf16 arithmetic (AVX512-BF16, AMX or Arm "
                         "BF16), so bf16 would be emulated and slower than fp32: use --precision fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 1:  # regression (STS-B)
        return F.mse_loss(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


@torch.no_grad()
def predict(model: SequenceClassifier, encoded: data.EncodedSplit, batch_size: int, device: torch.device,
            precision: str = "fp32") -> tuple[np.ndarray, dict]:
    """Predictions for a split (class ids, or scores for regression) and mean gate values by layer/kind."""
    model.eval()
    by_length = np.argsort([len(ids) for ids in encoded.input_ids], kind="stable")  # less padding
    predictions, gate_sums, n = [], {}, 0
    for batch in data.batches(encoded.select(by_length), batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        predictions.append(logits.float() if logits.dim() == 1 else logits.argmax(-1))
        for layer, kinds in model.bert.gate_values().items():
            for kind, value in kinds.items():
                key = f"{layer}.{kind}"
                gate_sums[key] = gate_sums.get(key, 0.0) + value.float().sum()
        n += batch["input_ids"].size(0)
    if not predictions:
        raise ValueError("cannot evaluate on an empty split: the dev set (--dev-size) and every test file "
                         "need at least one example")
    gates = {key: round(float(total) / n, 6) for key, total in gate_sums.items()}
    in_order = np.empty_like(by_length)
    in_order[by_length] = np.arange(len(by_length))
    return torch.cat(predictions).cpu().numpy()[in_order], gates


def evaluate(model, encoded, task: data.Task, run: TrainConfig, device) -> tuple[dict, dict]:
    predictions, gates = predict(model, encoded, run.eval_batch_size, device, run.precision)
    return compute_metrics(task.name, predictions, encoded.labels), gates


def build_model(run: TrainConfig, task: data.Task, device: torch.device) -> tuple[SequenceClassifier, Path]:
    model_dir = resolve_model(run.model)
    pooling = run.pooling or declared_pooling(model_dir)
    bert = BertModel.from_pretrained(model_dir, run.pelt())
    model = SequenceClassifier(bert, task.num_labels, pooling).to(device)
    mark_trainable(model, bert.pelt)
    return model, model_dir


def sequence_length(max_seq_length: int, model: SequenceClassifier) -> int:
    """Tokens per example: --max-seq-length, capped by the model's position table so that longer
    inputs are truncated instead of failing in the embeddings (a tiny model may have only 40)."""
    return min(max_seq_length, model.bert.config.max_position_embeddings)


def param_groups(model: SequenceClassifier, run: TrainConfig) -> list[dict]:
    """The trainable parameters; the prefix MLP in a group of its own when --prefix-lr is set."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    prefix = [p for n, p in trainable if parameter_kind(n) == "prefix"]
    if run.prefix_lr is None or not prefix:
        return [{"params": [p for _, p in trainable]}]
    return [{"params": [p for n, p in trainable if parameter_kind(n) != "prefix"]},
            {"params": prefix, "lr": run.prefix_lr}]


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    warmup = max(1, int(warmup_ratio * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))))


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
    torch.manual_seed(run.seed)
    task = data.get_task(run.task)
    model, model_dir = build_model(run, task, device)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    splits = data.load_task(task.name, run.data_dir)
    train_all = data.encode_split(splits["train"], tokenizer, sequence_length(run.max_seq_length, model))
    train_set, dev_set = data.few_shot(train_all, run.k, run.seed, run.dev_size)
    if len(dev_set) == 0:
        raise ValueError(f"dev_size={run.dev_size} leaves no dev examples, but checkpoint selection evaluates "
                         f"on the dev split: use --dev-size 1 or more")
    if dist.is_main:
        print(f"{task.name} K={run.k} seed={run.seed}: {len(train_set)} train, {len(dev_set)} dev; "
              f"method {model.bert.pelt.name}, pooling {model.pooling}, device {device}, lr {run.lr}")
        print(report(model))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, run), lr=run.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=run.weight_decay)
    steps_per_epoch = data.num_batches(len(train_set), run.batch_size)
    dist.check_batches(len(train_set), run.batch_size)
    total_steps = steps_per_epoch * run.epochs
    scheduler = linear_schedule(optimizer, total_steps, run.warmup_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=run.precision == "fp16")
    state = runstate.RunState()
    if (out / runstate.STATE_FILE).exists():
        state = runstate.load(out, model, optimizer, scheduler)
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
        bar = tqdm(data.batches(train_set, run.batch_size, shuffle=True, generator=order), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{run.epochs}", disable=not dist.is_main, leave=False)
        for batch in bar:
            loss = train_step(ddp_model, batch, dist, device, run, params, optimizer, scheduler, scaler)
            state.step += 1
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), state.step, first_bad_step)
            if state.step % 10 == 0:  # reading the loss syncs with the device: not every step
                check_finite(first_bad_step, out)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if state.step % eval_every == 0 or state.step == total_steps:  # the last step is always evaluated
                check_finite(first_bad_step, out)
                dev_metrics = evaluate(model, dev_set, task, run, device)[0] if dist.is_main else None
                runstate.record_evaluation(state, dist.broadcast(dev_metrics), task, run, model, out, dist)
                model.train()
                if state.stopped:
                    break
        bar.close()
        check_finite(first_bad_step, out)  # never save a state that a NaN has reached
        state.epoch = epoch + 1
        if dist.is_main:
            runstate.save(out, run, state, model, optimizer, scheduler)
    dist.barrier()
    if not dist.is_main:
        return {}
    return finish(run, task, model, splits, tokenizer, device, state, time.time() - start, out)


def finish(run, task, model, splits, tokenizer, device, state, seconds, out: Path) -> dict:
    """Evaluate the best checkpoint on the test set(s) and write results.json."""
    load_trainable(model, out / runstate.BEST_FILE)
    tests, gates = {}, {}
    for name in task.test_files:
        try:
            encoded = data.encode_split(splits[name], tokenizer, sequence_length(run.max_seq_length, model))
        except FileNotFoundError as e:
            print(f"skipping test set {name}: {e}")
            continue
        tests[name], gates[name] = evaluate(model, encoded, task, run, device)
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
