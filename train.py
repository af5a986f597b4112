"""Train a PELT method on a GLUE task in the paper's few-shot protocol.

    python train.py --task stsb --k 500 --method unipelt --device cuda
    python train.py --task rte --k 100 --method lora --model minilm --data-dir ../shared/data/glue --seeds 1 2 3

Each seed writes results.json and best.safetensors into its own output directory; with
several seeds the mean and std of the test metrics go to summary.json beside them.
Re-running the same command resumes an interrupted run and skips finished ones.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minipelt import data, distributed
from minipelt.classifier import POOLINGS
from minipelt.methods import NAMED, SINGLE
from minipelt.trainer import METHOD_DEFAULTS, TrainConfig, train


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", required=True, help="cola sst2 mrpc stsb qqp mnli qnli rte")
    p.add_argument("--k", type=data.parse_k, required=True, help="training examples per seed (100, 500, 1000) or 'full'")
    p.add_argument("--method", default="unipelt",
                   help=f"{', '.join(SINGLE + tuple(NAMED))}, or a '+' combination (unipelt)")
    p.add_argument("--model", default="bert-base-uncased", help="a fetched name (minilm, bert-base-uncased) or a directory (bert-base-uncased)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="data seeds, one run each (alias --seed; 42)")
    p.add_argument("--seed", type=int, dest="seeds", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, help="default: per method, see README")
    p.add_argument("--prefix-lr", type=float, help="the prefix MLP's learning rate (default: per method, see README)")
    p.add_argument("--epochs", type=int, help="default: per method, see README")
    p.add_argument("--batch-size", type=int, default=16, help="(16)")
    p.add_argument("--max-seq-length", type=int, default=128, help="(128; capped by the model's position table)")
    p.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: every epoch)")
    p.add_argument("--patience", type=int, default=10, help="early stopping: evaluations without improvement (10)")
    p.add_argument("--dev-size", type=int, default=1000,
                   help="dev examples taken after the K train ones (1000 in the paper); smaller for tiny data and tests")
    p.add_argument("--pooling", choices=POOLINGS, help="head input; default: the checkpoint's declared pooling, else cls")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="bf16: CUDA, or a CPU with native bf16; fp16: CUDA only (fp32)")
    p.add_argument("--data-dir", help="a GLUE directory in the original tsv layout (default: $MINIPELT_GLUE_DIR, else the hub)")
    p.add_argument("--output-dir", help="default: runs/TASK-kK-METHOD; one seedN folder per seed inside")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or different run in the output dir")
    m = p.add_argument_group("method options (defaults from the paper)")
    m.add_argument("--gated", action=argparse.BooleanOptionalAction, help="UniPELT gates (default: on for unipelt*)")
    m.add_argument("--reduction-factor", type=int, help="adapter bottleneck H / r (16)")
    m.add_argument("--prefix-length", type=int, help="L (10)")
    m.add_argument("--prefix-hidden", type=int, help="prefix MLP width (512)")
    m.add_argument("--prefix-gate", choices=("attention", "kv"), help="gate form: exact 'attention' or official 'kv'")
    m.add_argument("--lora-r", type=int, help="LoRA rank (8)")
    m.add_argument("--lora-alpha", type=float, help="LoRA alpha (16; scaling alpha/r)")
    return p.parse_args(argv)


def run_configs(args) -> list[TrainConfig]:
    options = {k: getattr(args, k) for k in ("gated", "reduction_factor", "prefix_length", "prefix_hidden",
                                            "prefix_gate", "lora_r", "lora_alpha") if getattr(args, k) is not None}
    k_name = "full" if args.k is None else args.k
    root = Path(args.output_dir or f"runs/{args.task}-k{k_name}-{args.method}")
    return [TrainConfig(task=args.task, k=args.k, method=args.method, model=args.model, seed=seed, lr=args.lr,
                        prefix_lr=args.prefix_lr, epochs=args.epochs, batch_size=args.batch_size,
                        max_seq_length=args.max_seq_length, eval_every=args.eval_every, patience=args.patience,
                        dev_size=args.dev_size,
                        pooling=args.pooling, device=args.device, precision=args.precision, data_dir=args.data_dir,
                        output_dir=str(root / f"seed{seed}"), method_options=options)
            for seed in args.seeds]


def summarize(results: list[dict], path: Path) -> None:
    """Mean and std over seeds of every test metric."""
    summary = {"task": results[0]["task"], "method": results[0]["method"], "k": results[0]["k"],
               "seeds": [r["seed"] for r in results], "test": {}}
    for metric in results[0]["test"]:
        values = np.array([r["test"][metric] for r in results])
        summary["test"][metric] = {"mean": float(values.mean()), "std": float(values.std())}
    path.write_text(json.dumps(summary, indent=2))
    print("over seeds:", ", ".join(f"{m} {v['mean']:.4f} +- {v['std']:.4f}" for m, v in summary["test"].items()))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.method not in METHOD_DEFAULTS and (args.lr is None or args.epochs is None):
        print(f"note: {args.method} has no tuned defaults; using unipelt's lr/epochs unless given")
    try:
        results = [train(run, overwrite=args.overwrite) for run in run_configs(args)]
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
    if len(results) > 1 and all(results):  # rank 0 only under torchrun: the other ranks return {}
        summarize(results, Path(run_configs(args)[0].output_dir).parent / "summary.json")
    distributed.shutdown()


if __name__ == "__main__":
    main()
