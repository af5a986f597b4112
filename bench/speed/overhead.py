"""Where a deployed method's inference time goes beyond plain BERT's, op by op (torch.profiler).

    python bench/speed/overhead.py --model minilm --shape 16x128 --method unipelt --threads 2

Both models are built and deployed as bench/speed/inference.py builds them. In each round each
runs --calls no-grad forwards under torch.profiler, in turn, after a warm-up. Self CPU time is
summed per op and input shapes over the rounds, per forward; the table lists the ops whose time
differs most between the method and plain BERT, then the rest, then the totals. A profile says
where the time goes; the ratio itself, without the profiler's own cost, is inference.py's.
Results: bench/results/overhead_<method>_<model>_<shape>.md
"""
import argparse
import datetime
import os
import resource
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.speed.measure import cpu_name, parse_shape
from bench.speed.speed import RESULTS_DIR, ROOT, build_model, deploy, make_batch
from minipelt.model.methods import METHODS


def profile_ms(model, inputs, calls: int, totals: dict) -> int:
    """Add each (op, input shapes)'s self CPU milliseconds over `calls` forwards to `totals`; return the
    process's minor page faults meanwhile (memory touched for the first time since the allocator got it)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            model(*inputs)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    for event in prof.key_averages(group_by_input_shape=True):
        shapes = ", ".join(str(s) for s in event.input_shapes if s)
        totals[(event.key, shapes)] += event.self_cpu_time_total / 1e3
    return faults


def markdown(env: dict, plain: dict, method: dict, faults: tuple[float, float], top: int) -> str:
    ops = sorted(set(plain) | set(method), key=lambda op: abs(method[op] - plain[op]), reverse=True)
    row = lambda name, shapes, a, b: f"| {name} | {shapes} | {a:.2f} | {b:.2f} | {b - a:+.2f} |"  # noqa: E731
    rest = ops[top:]
    lines = [f"# Deployed {env['method']} against plain BERT, op by op ({env['model']}, {env['shape']})", "",
             f"`{env['command']}`", "",
             f"{env['date']}; {env['hardware']}; torch {env['torch']}, {env['threads']} thread(s); "
             f"{env['rounds']} rounds of {env['calls']} no-grad forwards each, after a warm-up; self CPU time "
             f"per forward (ms), summed per op and input shapes, under torch.profiler.", "",
             "| op | input shapes | plain BERT | " + env["method"] + " | difference |", "|---|---|---:|---:|---:|",
             *(row(name, shapes, plain[(name, shapes)], method[(name, shapes)]) for name, shapes in ops[:top]),
             row(f"{len(rest)} other ops", "", sum(plain[op] for op in rest), sum(method[op] for op in rest)),
             row("**all**", "", sum(plain.values()), sum(method.values())), "",
             f"Minor page faults per forward (under the profiler, which allocates too): plain BERT "
             f"{faults[0]:.0f}, {env['method']} {faults[1]:.0f}. An op that both models run on the same shapes "
             "and that differs in time (a copy_, gelu) pays for memory effects, not for more arithmetic: "
             "memory touched for the first time (a page fault per 4 KiB, counted in the op that writes "
             "first) and caches. The ops only the method runs are its own work.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="bert-base (random, bert-base shape), minilm, or a directory")
    parser.add_argument("--shape", default="16x128", help="batch x length")
    parser.add_argument("--method", default="unipelt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=5, help="forwards per model per round")
    parser.add_argument("--top", type=int, default=25, help="rows before the rest are summed")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.method not in METHODS or args.method == "finetune":
        parser.error(f"--method {args.method!r}: choose one of {', '.join(m for m in METHODS if m != 'finetune')}")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    models = {name: build_model(args.model, name, device) for name in ("finetune", args.method)}
    for model in models.values():
        deploy(model)
        model.eval()
    batch = make_batch(models["finetune"].bert.config, *parse_shape(args.shape), device)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    totals = {name: defaultdict(float) for name in models}
    faults = dict.fromkeys(models, 0)
    for name, model in models.items():  # warm-up, unrecorded
        profile_ms(model, inputs, 1, defaultdict(float))
    for _ in range(args.rounds):
        for name, model in models.items():
            faults[name] += profile_ms(model, inputs, args.calls, totals[name])
    forwards = args.rounds * args.calls
    plain, method = ({op: ms / forwards for op, ms in totals[name].items()} for name in models)
    plain, method = defaultdict(float, plain), defaultdict(float, method)

    env = dict(command="python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
               date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), hardware=cpu_name(),
               torch=torch.__version__, **{k: v for k, v in vars(args).items() if k != "out_dir"})
    text = markdown(env, plain, method, tuple(f / forwards for f in faults.values()), args.top)
    print(text)
    name = Path(args.model).name if Path(args.model).is_dir() else args.model
    out = Path(args.out_dir) / f"overhead_{args.method}_{name}_{args.shape}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
