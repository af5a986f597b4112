"""minipelt against the peer libraries (transformers, peft, adapters): same methods, shapes, protocol.

    python bench/speed/peers.py --peer-python /path/to/peer-venv/bin/python            # the whole table
    python bench/speed/peers.py --models minilm --shapes 16x128 --methods lora,unipelt --steps 2 \
        --peer-python /path/to/peer-venv/bin/python                               # a part of it

(minipelt installed with `pip install -e .`; without it, `python -m bench.speed.peers` from the repository root.)

The peers are optional (bench/requirements-peers.txt) and never a dependency of minipelt: install
them into any interpreter and pass it as --peer-python. Peer cells run under that interpreter,
minipelt cells under the current one.

A cell is model x shape x method x implementation, measured in a fresh process of its own (so
that no cell's peak memory hides another's):

    models     minilm     the all-MiniLM-L6-v2 weights in weights/minilm
               bert-base  RANDOM weights of bert-base's shape (../shared/configs/bert-base-uncased.json):
                          speed does not depend on the weights
    shapes     16x128, 4x512 (batch x length): random token ids, no padding, the same batch for all
    minipelt   SequenceClassifier(pooling='cls', 2 labels) with PeltConfig.from_method(method)
    peers      Hugging Face BertForSequenceClassification (2 labels) with
      finetune   transformers  every parameter trains
      bitfit     transformers  every bias (+ the classifier)
      adapter    adapters      SeqBnConfig(reduction_factor=16, non_linearity="relu")
      prefix     adapters      PrefixTuningConfig(prefix_length=10, bottleneck_size=512, flat=False)
                 peft          PrefixTuningConfig(num_virtual_tokens=10, prefix_projection=True,
                               encoder_hidden_size=512)
      lora       peft          LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                               lora_dropout=0)
      unipelt    adapters      UniPELTConfig(): gated prefix + adapter + LoRA (minipelt: UniPELT APL)
    Under every method the classifier trains too. Both sides: fp32, train-mode dropout as the
    model config says (0.1), loss computed outside the model on the logits.

What a cell measures is bench/speed/speed.py's protocol; a minipelt cell runs speed.measure_one itself:

    train step   train mode; forward, cross-entropy, backward, AdamW (torch's default implementation,
                 lr 1e-5) over the trainable parameters, zero_grad(set_to_none=True)
    inference    eval mode under no_grad, the same batch
    merged       inference again in the deployable form the implementation offers: minipelt merges
                 an ungated LoRA and folds the prefix; peft merges LoRA (merge_and_unload); adapters
                 ejects the prefix MLP (eject_prefix_tuning). peft's prefix, adapters' gated LoRA,
                 the adapter, BitFit and fine-tuning have none.
    times        median over --steps calls after --warmup calls, of process CPU time
                 (time.process_time, all threads; other jobs on a shared CPU do not inflate it) and of
                 wall time. Ratios use CPU time on CPU and wall time on CUDA.
    deployed vs base
                 the deployed model (as `merged`) against its side's plain base model (minipelt's BERT,
                 transformers' for the peers), fresh models in eval mode, timed in --infer-rounds rounds
                 of one no-grad forward each (bench.speed.measure.time_rounds): the ratio of the minima and the
                 median of the per-round ratios. Separate processes differ here by more than a method
                 adds to inference; in fine-tuning's cell this compares two base models, the floor of
                 the measurement.
    train, same rounds
                 in a peer cell, fresh models of the peer's and of minipelt's method, their train steps
                 timed in --rounds rounds of the peer's process (the same two figures, minipelt over
                 the peer): the comparison that separate processes blur by up to 15%.
    peak memory  bench.speed.measure.PeakMemory over the warm-up and measured train steps. CPU: peak RSS
                 increase over the RSS just before them. CUDA: allocator peak over the allocation then.
    params       trainable parameters without the classifier (a prefix counted with its MLP)

Every cell is also given relative to fine-tuning of its own side in the same run (minipelt's, or
transformers' for the peers), and minipelt relative to each peer. A cell that fails is reported
as failed (e.g. peft's prefix at length 512) and the run goes on.
Results: bench/results/peers_<device>.json and .md.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.speed.measure import add_output_options, check_args, cpu_name
from bench.speed.peer_cell import measure_cell, source_digest
from bench.speed.peer_models import METHODS, MODELS, PEERS
from bench.speed.peers_report import markdown, ms, summarise
from bench.speed.speed import RESULTS_DIR, ROOT

SHAPES = ("16x128", "4x512")


# ----------------------------------------------------------------------------------------------
# The whole run: one subprocess per cell, then the tables
# ----------------------------------------------------------------------------------------------

def all_cells(args) -> list[dict]:
    """(model, shape, method, implementation) in table order; fine-tuning is always included."""
    methods = [m for m in METHODS if m == "finetune" or m in args.methods]
    return [dict(model=model, shape=shape, method=method, impl=impl)
            for model in args.models for shape in args.shapes for method in methods
            for impl in ("minipelt",) + PEERS[method]]


def run_cell(args, cell: dict) -> dict:
    """Measure one cell in a fresh process; a failure is recorded with its error, not raised."""
    python = sys.executable if cell["impl"] == "minipelt" else args.peer_python
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        # -m from the repository root: minipelt and bench import without being installed there.
        command = [python, "-m", "bench.speed.peers", "--one", cell["impl"], "--models", cell["model"],
                   "--shapes", cell["shape"], "--methods", cell["method"], "--device", args.device,
                   "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--rounds", str(args.rounds), "--infer-rounds", str(args.infer_rounds),
                   "--json-out", str(out)]
        start = time.time()
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        seconds = round(time.time() - start, 1)
        if done.returncode == 0 and out.is_file():
            return dict(cell, status="ok", seconds=seconds, **json.loads(out.read_text()))
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return dict(cell, status="failed", seconds=seconds, error=lines[-1] if lines else f"exit {done.returncode}",
                log_tail=lines[-30:])


def run_all(args) -> list[dict]:
    results = []
    for cell in all_cells(args):
        print(f"--- {cell['model']} {cell['shape']} {cell['method']:9} {cell['impl']:12}", end=" ", flush=True)
        r = run_cell(args, cell)
        if r["status"] == "ok":
            print(f"train {ms(r, 'train', args.device):.0f} ms, infer {ms(r, 'infer', args.device):.0f} ms, "
                  f"peak {r['train_peak_bytes'] / 2**20:.0f} MiB ({r['seconds']:.0f} s)", flush=True)
        else:
            print(f"FAILED ({r['seconds']:.0f} s): {r['error']}", flush=True)
        results.append(r)
    return results


def environment(args) -> dict:
    env = dict(
        command="python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        python=platform.python_version(), torch=torch.__version__, peer_python=args.peer_python,
        device=args.device, threads=args.threads, steps=args.steps, warmup=args.warmup,
        rounds=args.rounds, infer_rounds=args.infer_rounds,
        models=args.models, shapes=args.shapes, methods=args.methods, precision="fp32",
        optimizer="torch.optim.AdamW, default implementation, lr 1e-5, no gradient clipping",
        inputs="random token ids, no padding (attention_mask all ones)",
        minipelt_commit=git("rev-parse", "--short", "HEAD"),
        minipelt_uncommitted_changes=bool(git("status", "--porcelain", "--", "minipelt")),
        minipelt_source=source_digest(), note=args.note,
    )
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    else:
        env["cpu"] = cpu_name()
        env["load_average_at_start"] = os.getloadavg()
    return env


def git(*command: str) -> str:
    try:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------

def comma_list(choices):
    def parse(text: str) -> list[str]:
        items = [t for t in text.split(",") if t]
        unknown = [t for t in items if t not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}: choose from {', '.join(choices)}")
        return items
    return parse


def shape_list(text: str) -> list[str]:
    shapes = [t for t in text.split(",") if t]
    if not shapes or not all(re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", t) for t in shapes):
        raise argparse.ArgumentTypeError(f"{text!r}: give BATCHxLENGTH, comma-separated (e.g. 16x128,4x512)")
    return shapes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=comma_list(tuple(MODELS)), default=list(MODELS), help="comma-separated")
    parser.add_argument("--shapes", type=shape_list, default=list(SHAPES),
                        help="comma-separated batch x length, e.g. 16x128,4x512")
    parser.add_argument("--methods", type=comma_list(METHODS), default=list(METHODS),
                        help="comma-separated; finetune is always added")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every cell")
    parser.add_argument("--steps", type=int, default=5, help="measured calls (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls before the measured ones")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of minipelt vs peer train steps")
    parser.add_argument("--infer-rounds", type=int, default=20,
                        help="rounds of deployed vs base inference (a forward costs a tenth of a train step: "
                             "more rounds, for the few percent a method adds)")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="interpreter with transformers, peft, adapters (bench/requirements-peers.txt)")
    add_output_options(parser, RESULTS_DIR)
    args = parser.parse_args(argv)
    check_args(parser, args)

    if args.rounds < 1 or args.infer_rounds < 1:
        parser.error("--rounds and --infer-rounds must be >= 1")
    if args.one:
        args.models, args.shapes, args.methods = args.models[0], args.shapes[0], args.methods[0]
        Path(args.json_out).write_text(json.dumps(measure_cell(args)))
        return

    env = environment(args)
    results = run_all(args)
    if args.device == "cpu":
        env["load_average_at_end"] = os.getloadavg()
    rows = summarise(results, args.device)
    text = markdown(env, rows, results)
    print(text)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"peers_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(dict(env=env, summary=rows, raw=results), indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
