"""What the kernels buy: the textbook path (minipelt.textbook()) against the kernels, interleaved in one process.

    python bench/speed/textbook.py --model minilm --shapes 16x128,4x512 --threads 2
    python bench/speed/textbook.py --model minilm --shapes 16x128 --precision bf16 --rounds 3

Two tables, each a ratio textbook / kernels (above 1: the kernels are faster), as the ratio of the
minima over the rounds and the median of the per-round ratios (bench/speed/measure.paired_ratio):
- whole models, built as bench/speed/speed.py builds them: a train step (forward, cross-entropy,
  backward, AdamW; train mode, so dropout on) and a deployed no-grad forward (speed.deploy);
- each kernel alone at one layer of the model's shape (h heads of d, L = 10, r = 8, m = H / 16, dropout 0.1).
A round runs every call once on each path in turn, so a change in the machine's load hits both.
Results: bench/results/textbook_<model>_<device>[_bf16][_<parts>].md and .json.
"""
import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.speed.measure import cpu_name, make_train_step, paired_ratio, parse_shape, time_rounds
from bench.speed.speed import RESULTS_DIR, ROOT, build_model, deploy, make_batch
from minipelt import kernels, textbook
from minipelt.model.adapter import Adapter
from minipelt.model.attention import attend
from minipelt.model.lora import LoRALinear
from minipelt.model.prefix import attend_prefix, mix_in_prefix
from minipelt.training.device import autocast


def on_both_paths(calls: dict) -> dict:
    """{name: call} -> {(name, path): call run with the kernels or on the textbook path}."""
    def on(path, call):
        def run():
            with textbook(path == "textbook"):
                call()
        return run
    return {(name, path): on(path, call) for name, call in calls.items() for path in ("kernels", "textbook")}


def model_calls(args, shape: str, device) -> dict:
    calls = {}
    for method in args.methods.split(","):
        model = build_model(args.model, method, device)
        batch = make_batch(model.bert.config, *parse_shape(shape), device)

        def forward(model=model, batch=batch):
            with autocast(device, args.precision):
                return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        calls[f"{method} train step"] = lambda model=model, step=make_train_step(forward, batch["labels"], optimizer): (
            model.train(), step())
        deployed = build_model(args.model, method, device).eval()
        deploy(deployed)
        deployed_batch = make_batch(deployed.bert.config, *parse_shape(shape), device)
        calls[f"{method} inference"] = torch.no_grad()(lambda m=deployed, b=deployed_batch: m(
            b["input_ids"], b["attention_mask"], b["token_type_ids"]))
    return calls


def kernel_calls(shape: str, config, device) -> dict:
    """Each kernel's textbook function at one layer: forward + backward (training), or forward (inference)."""
    B, T = parse_shape(shape)
    h, d, H = config.num_attention_heads, config.hidden_size // config.num_attention_heads, config.hidden_size
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, h, T, d, generator=g, device=device, requires_grad=True) for _ in range(3))
    p_k, p_v = torch.randn(2, h, 10, d, generator=g, device=device)
    mask = torch.ones(B, 1, 1, T, dtype=torch.bool, device=device)
    gate = torch.full((B, 1, 1, 1), 0.5, device=device, requires_grad=True)
    lora, gated_lora = LoRALinear(H, H, r=8).to(device), LoRALinear(H, H, r=8, gated=True).to(device)
    for m in (lora, gated_lora):
        torch.nn.init.normal_(m.lora_B)
    x, residual = (torch.randn(B, T, H, generator=g, device=device, requires_grad=True) for _ in range(2))
    adapter = Adapter(H, 16, gated=True).to(device)
    tokens = torch.ones(B, T, dtype=torch.bool, device=device)
    probs = torch.rand(B, h, T, T, generator=g, device=device)

    def backward(out):
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    return {
        "attend, training (dropout 0.1, log Z)": lambda: backward(attend(q, k, v, mask, 0.1, with_log_z=True)),
        "attend, inference (log Z)": torch.no_grad()(lambda: attend(q, k, v, mask, with_log_z=True)),
        "attend_prefix, training": lambda: backward(attend_prefix(q, p_k, p_v, 0.1)),
        "gated prefix mixture, training": lambda: backward(mix_in_prefix(q, k, v, mask, p_k, p_v, gate, 0.1)),
        "gated prefix mixture, inference": torch.no_grad()(lambda: mix_in_prefix(q, k, v, mask, p_k, p_v, gate, 0.0)),
        "LoRA projection, training": lambda: backward(lora(x)),
        "gated LoRA projection, inference": torch.no_grad()(lambda: gated_lora(x, tokens)),
        "gated adapter, training": lambda: backward(adapter(x, residual, tokens)),
        "gated adapter, inference": torch.no_grad()(lambda: adapter(x, residual, tokens)),
        "attention dropout alone (F.dropout / dropout16)": lambda: (
            kernels.dropout16(probs, 0.1) if kernels.enabled() else F.dropout(probs, 0.1)),
    }


def ratio_rows(times: dict, names) -> list[list[str]]:
    rows = []
    for name in names:
        by_min, by_median = paired_ratio(times[(name, "textbook")][1], times[(name, "kernels")][1])
        rows.append([name, f"{1000 * min(times[(name, 'kernels')][1]):.1f}",
                     f"{1000 * min(times[(name, 'textbook')][1]):.1f}", f"{by_min:.2f}", f"{by_median:.2f}"])
    return rows


def table(title: str, rows: list[list[str]]) -> str:
    return (f"\n## {title}\n\n| | kernels (ms) | textbook (ms) | textbook / kernels, minima | median of round ratios |\n"
            "|---|---|---|---|---|\n" + "".join("| " + " | ".join(r) + " |\n" for r in rows))


def markdown(env: dict, tables: dict) -> str:
    return (f"# The textbook path against the kernels\n\n`{env['command']}`\n\n{env['hardware']}, torch {env['torch']}, "
            f"{env['threads']} threads, {env['precision']}, {env['rounds']} rounds after {env['warmup']}; process CPU "
            f"time per call, {env['date']}. {env['note']}\n" + "".join(table(t, rows) for t, rows in tables.items()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="bert-base (random, bert-base shape), minilm, or a directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="16x128,4x512")
    parser.add_argument("--methods", default="unipelt,prefix,lora,finetune")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--parts", default="models,kernels", help="models (whole models), kernels (each alone), or both")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tables, raw = {}, {}
    for shape in args.shapes.split(","):
        parts = {}
        if "models" in args.parts:
            parts["models"] = model_calls(args, shape, device)
        if "kernels" in args.parts:
            parts["each kernel alone"] = kernel_calls(shape, build_model(args.model, "finetune", device).bert.config,
                                                      device)
        for part, calls in parts.items():
            with autocast(device, args.precision):
                times = time_rounds(on_both_paths(calls), args.rounds, args.warmup, device)
            tables[f"{part}, {shape}"] = ratio_rows(times, calls)
            raw[f"{part}, {shape}"] = {f"{n} / {p}": t[1] for (n, p), t in times.items()}
            print(table(f"{part}, {shape}", tables[f"{part}, {shape}"]), flush=True)
    env = dict(vars(args), command="python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
               date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), hardware=cpu_name(),
               torch=torch.__version__)
    name = Path(args.model).name if Path(args.model).is_dir() else args.model
    only = "" if set(args.parts.split(",")) == {"models", "kernels"} else "_" + args.parts
    stem = Path(args.out_dir) / f"textbook_{name}_{device.type}{'_bf16' if args.precision == 'bf16' else ''}{only}"
    stem.with_suffix(".json").write_text(json.dumps(dict(env=env, cpu_seconds=raw), indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(env, tables))
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
