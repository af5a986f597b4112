"""Deployed inference of every method against plain BERT, timed interleaved in one process.

    python bench/speed/inference.py --model minilm --shapes 16x128,4x512 --threads 2
    python bench/speed/inference.py --model bert-base --shapes 16x128 --rounds 10 --device cuda
    python bench/speed/inference.py --methods adapter,prefix,lora,unipelt --gated   # UniPELT's cost, part by part

Every method's model is built as bench/speed/speed.py builds it (the same base weights; the method's
own init, so the gates sit near 0.5 and every PELT path runs), deployed (speed.deploy: the
prefix folded, an ungated LoRA merged) and put in eval mode. A round is one no-grad forward of
each model in turn on the same batch; after --warmup rounds, --rounds are timed. Per method,
against fine-tuning's (plain BERT): the ratio of the minima over the rounds, and the median
over the rounds of the ratio within a round (paired: a round's disturbance hits both).

Why one process, interleaved: bench/speed/speed.py and bench/speed/peers.py time each method in a process
of its own (they must, for peak memory), and on a shared CPU two such processes differ by up
to 15% (other load, and the kernel faulting in fresh pages for the large activations): more
than the few percent a method adds to inference. Rounds put every model under the same
conditions, and the minimum is each model's least disturbed call.
Results: bench/results/inference_<model>_<device>.md and .json.
"""
import argparse
import datetime
import json
import os
import shlex
import sys
from functools import partial
from pathlib import Path

import torch

from bench.speed.measure import cpu_name, paired_ratio, parse_shape, time_rounds
from bench.speed.speed import RESULTS_DIR, ROOT, build_model, deploy, make_batch
from minipelt.model.methods import METHODS


def markdown(env: dict, deployed: dict[str, str], by_shape: dict[str, dict[str, list[float]]]) -> str:
    header = "| method | deployed as | " + " | ".join(f"{s}: ms (min) | x plain, min | x plain, paired median"
                                                       for s in by_shape) + " |"
    rows = [header, "|---|---|" + "---:|---:|---:|" * len(by_shape)]
    for method in deployed:
        cells = []
        for times in by_shape.values():
            of_minima, paired = paired_ratio(times[method], times["finetune"])
            cells += [f"{1e3 * min(times[method]):.1f}", f"{of_minima:.3f}", f"{paired:.3f}"]
        rows.append(f"| {method} | {deployed[method] or 'as trained'} | " + " | ".join(cells) + " |")
    lines = [f"# Deployed inference against plain BERT ({env['model']}, {env['device']})", "",
             f"`{env['command']}`", "",
             f"{env['date']}; {env['hardware']}; torch {env['torch']}, {env['threads']} thread(s); "
             f"{env['rounds']} timed rounds after {env['warmup']}, every model once a round, no grad, fp32, "
             f"random token ids without padding. x plain: over fine-tuning (plain BERT) in the same rounds: "
             f"the ratio of the minima, and the median of the per-round ratios.",
             *([f"Note: {env['note']}"] if env["note"] else []), "", *rows, ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="bert-base (random, bert-base shape), minilm, or a directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--shapes", default="16x128,4x512", help="comma-separated batch x length")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated; finetune is always added")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    parser.add_argument("--note", default="", help="a remark written into the .md")
    parser.add_argument("--gated", action="store_true", help="each method with UniPELT's gates on its parts (a gated "
                                                              "adapter, prefix or LoRA alone: UniPELT's cost by part)")
    args = parser.parse_args(argv)
    methods = ["finetune"] + [m for m in args.methods.split(",") if m != "finetune"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}: choose from {', '.join(METHODS)}")
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)

    models = {}  # by the method's name: 'adapter(gated)' with --gated
    for method in methods:
        model = build_model(args.model, method, device, gated=True if args.gated and method != "finetune" else None)
        models[model.bert.pelt.name] = model
    deployed = {method: deploy(model) for method, model in models.items()}
    for model in models.values():
        model.eval()
    by_shape = {}
    for shape in args.shapes.split(","):
        batch = make_batch(models["finetune"].bert.config, *parse_shape(shape), device)
        calls = {method: partial(model, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                 for method, model in models.items()}
        with torch.no_grad():
            wall_and_cpu = time_rounds(calls, args.rounds, args.warmup, device)
        by_shape[shape] = {method: wall for method, (wall, _) in wall_and_cpu.items()}
        print(f"--- {shape}: " + ", ".join(f"{m} {min(t) / min(by_shape[shape]['finetune']):.3f}"
                                        for m, t in by_shape[shape].items()), flush=True)

    env = dict(command="python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
               date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               hardware=torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
               torch=torch.__version__, model=args.model, device=args.device, threads=args.threads,
               rounds=args.rounds, warmup=args.warmup, note=args.note)
    text = markdown(env, deployed, by_shape)
    print(text)
    name = Path(args.model).name if Path(args.model).is_dir() else args.model
    stem = Path(args.out_dir) / f"inference_{name}_{device.type}{'_gated' if args.gated else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(dict(env=env, deployed=deployed, seconds=by_shape), indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
