"""Training speed, inference speed, memory and size of every PELT method vs fine-tuning.

The paper's Table 4 (Mao et al., ACL 2022), measured again on minipelt:

    python bench/speed/speed.py --model minilm --steps 10
    python bench/speed/speed.py --model bert-base --steps 5 --batch-size 16 --seq-len 128
    python bench/speed/speed.py --model bert-base --device cuda --steps 20

--model bert-base is a RANDOM model of bert-base's shape (../shared/configs/bert-base-uncased.json,
found next to the repository): speed does not depend on the weights. --model minilm loads
the real all-MiniLM-L6-v2 (fetched into weights/minilm on first use); a directory works too.

What one method's measurement is (run in a fresh subprocess, `--one METHOD`, so that the
peak memory of one method is not hidden by another's):

    train step   model.train(); forward, cross-entropy, backward, AdamW.step() over the
                 trainable parameters only (mark_trainable applied), zero_grad(set_to_none).
                 Median over --steps steps after --warmup steps (the first step allocates
                 AdamW's state, so warm-up matters).
    inference    model.eval() under no_grad, same batch, median over --steps after --warmup.
    merged       the same inference after LoRA merge() (method lora) or prefix fold()
                 (every method with a prefix); a merged LoRA must cost what the base costs.
    peak memory  CPU: the peak resident set size reached during the warm-up and measured
                 train steps, minus the resident size just before them (model built,
                 optimizer created, batch made, nothing run yet: a backward run before
                 would leave its freed activations in the heap and hide them). The peak is reset with /proc/self/clear_refs
                 (Linux); where that fails, ru_maxrss minus its value after the build.
                 CUDA: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(),
                 minus memory_allocated() at the same point. Either way: gradients, AdamW
                 state and activations, not the weights themselves.
    parameters   minipelt.summary.count_trainable, head excluded like the paper's Table 4;
                 the prefix counted folded (N*2*L*H) and, separately, with its MLP.

Every figure is also given relative to fine-tuning in the same run, next to the paper's.
Results: bench/results/speed_<model>_<device>.json and .md.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.speed.measure import add_output_options, check_args, cpu_name, inference_times, train_then_infer
from bench.speed.speed_report import human, markdown, summarise
from minipelt.model.bert import BertConfig, BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.lora import LoRALinear
from minipelt.model.methods import METHODS, PeltConfig, mark_trainable
from minipelt.summary import KINDS, count_trainable
from minipelt.training.device import autocast

ROOT = Path(__file__).resolve().parents[2]  # the repository root
BERT_BASE_CONFIG = ROOT.parent / "shared" / "configs" / "bert-base-uncased.json"
RESULTS_DIR = ROOT / "bench" / "results"
NUM_LABELS = 2


# ----------------------------------------------------------------------------------------------
# One method, in its own process
# ----------------------------------------------------------------------------------------------

def build_model(model: str, method: str, device: torch.device, gated: bool | None = None) -> SequenceClassifier:
    """The method on `model`'s weights (or random bert-base-shaped ones); gated=True gives every part that has
    a gate UniPELT's gate (None: the method's own choice)."""
    pelt = PeltConfig.from_method(method, gated=gated)
    torch.manual_seed(0)
    if model == "bert-base":
        bert = BertModel(BertConfig.from_json(BERT_BASE_CONFIG), pelt)  # random weights
    else:
        bert = BertModel.from_pretrained(model, pelt)
    classifier = SequenceClassifier(bert, NUM_LABELS, pooling="cls").to(device)
    mark_trainable(classifier, pelt)
    return classifier


def make_batch(config: BertConfig, batch_size: int, seq_len: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1000, config.vocab_size, (batch_size, seq_len), generator=g)
    input_ids[:, 0] = 101  # [CLS]
    return dict(
        input_ids=input_ids.to(device),
        attention_mask=torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
        token_type_ids=torch.zeros(batch_size, seq_len, dtype=torch.long, device=device),
        labels=torch.randint(0, NUM_LABELS, (batch_size,), generator=g).to(device),
    )


def parameter_counts(model: SequenceClassifier) -> dict:
    counts, training = count_trainable(model, folded_prefix=True), count_trainable(model)
    pelt_kinds = [k for k in KINDS if k != "head"]
    return dict(
        params=sum(counts[k] for k in pelt_kinds),  # head excluded, prefix folded (Table 4's count)
        params_training=sum(training[k] for k in pelt_kinds),  # head excluded, prefix with its MLP
        head=counts["head"],
        base_total=counts["base_total"],
        by_kind={k: counts[k] for k in KINDS if counts[k]},
    )


def gradient_check(model, batch) -> dict:
    """One backward: no frozen parameter may get a .grad; list trainable ones that get none."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    F.cross_entropy(logits, batch["labels"]).backward()
    named = list(model.named_parameters())
    result = dict(
        frozen_with_grad=[n for n, p in named if not p.requires_grad and p.grad is not None],
        trainable_without_grad=[n for n, p in named if p.requires_grad and p.grad is None],
    )
    model.zero_grad(set_to_none=True)
    return result


def measure_one(args, method: str) -> dict:
    device = torch.device(args.device)
    model = build_model(args.model, method, device)
    batch = make_batch(model.bert.config, args.batch_size, args.seq_len, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)  # torch's default implementation for the device
    result = dict(method=method, **parameter_counts(model))

    def forward():
        with autocast(device, args.precision):
            return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    result.update(train_then_infer(model, forward, batch["labels"], optimizer, args.steps, args.warmup, device,
                                   lambda: gradient_check(model, batch)))

    merged_what = deploy(model)
    if merged_what:
        merged, merged_cpu = inference_times(forward, args.steps, args.warmup, device)
        result.update(merged=merged_what, merged_infer_s=merged, merged_infer_cpu_s=merged_cpu)
    return result


def deploy(model: SequenceClassifier) -> str:
    """Make a trained model what is deployed: ungated LoRA merged into W, the prefix MLP folded.
    Returns what was done ('' for nothing)."""
    done = []
    if model.bert.pelt.lora and not model.bert.pelt.gated:
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.merge()
        done.append("LoRA merged")
    if model.bert.prefix is not None:
        model.bert.prefix.fold()
        done.append("prefix folded")
    return " + ".join(done)


# ----------------------------------------------------------------------------------------------
# The whole run: one subprocess per method, then the table
# ----------------------------------------------------------------------------------------------

def child_command(args, method: str, out: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--one", method, "--json-out", out,
            "--model", args.model, "--device", args.device, "--batch-size", str(args.batch_size),
            "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--threads", str(args.threads), "--precision", args.precision]


def run_all(args) -> dict:
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"unknown method(s) {unknown}: choose from {', '.join(METHODS)}")
    if "finetune" not in methods:
        methods.insert(0, "finetune")  # everything is relative to fine-tuning
    results = {}
    for method in methods:
        print(f"--- {method}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "result.json")
            start = time.time()
            subprocess.run(child_command(args, method, out), check=True)
            results[method] = json.loads(Path(out).read_text())
        r = results[method]
        print(f"    {human(r['params'])} params, train {1e3 * statistics.median(r['train_s']):.0f} ms, infer "
              f"{1e3 * statistics.median(r['infer_s']):.0f} ms, peak {r['train_peak_bytes'] / 2**20:.0f} MiB "
              f"({time.time() - start:.0f} s)", flush=True)
    return results


def environment(args) -> dict:
    env = dict(
        command="python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        torch=torch.__version__, python=platform.python_version(),
        model=args.model, device=args.device, threads=args.threads, batch_size=args.batch_size,
        seq_len=args.seq_len, steps=args.steps, warmup=args.warmup, pooling="cls", precision=args.precision,
        optimizer="torch.optim.AdamW, default implementation, lr 1e-5, no gradient clipping",
        inputs="random token ids, no padding (attention_mask all ones)",
        note=args.note,
    )
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    else:
        env["cpu"] = cpu_name()
        env["load_average_at_start"] = os.getloadavg()
    return env


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="bert-base (random, bert-base shape), minilm, or a directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="autocast as in train.py: bf16 on CUDA or a CPU with native bf16, fp16 on CUDA")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="measured steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps before the measured ones")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated; finetune is always added")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: on a CPU shared with other jobs, more "
                             "threads than free cores make the threads wait for each other)")
    add_output_options(parser, RESULTS_DIR)
    args = parser.parse_args(argv)
    check_args(parser, args)
    torch.set_num_threads(args.threads)

    if args.one:
        Path(args.json_out).write_text(json.dumps(measure_one(args, args.one)))
        return

    env = environment(args)
    results = run_all(args)
    if args.device == "cpu":
        env["load_average_at_end"] = os.getloadavg()
    rows = summarise(results, cpu_time=args.device == "cpu")
    text = markdown(env, rows, results)
    print(text)
    name = Path(args.model).name if Path(args.model).is_dir() else args.model
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (f"speed_{name}_{args.device.split(':')[0]}" + ("" if args.precision == "fp32" else f"_{args.precision}"))
    stem.with_suffix(".json").write_text(json.dumps(dict(env=env, summary=rows, raw=results), indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
