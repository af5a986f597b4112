"""Train a PELT method on a GLUE task (or your own data) in the paper's few-shot protocol.

    python train.py --task stsb --k 500 --method unipelt --device cuda
    python train.py --task rte --k 100 --method lora --model minilm --data-dir ../shared/data/glue --seeds 1 2 3
    python train.py --train-file examples/reviews.csv --test-file examples/reviews_test.csv --k 100 --model minilm

Each seed writes results.json and best.safetensors into its own output directory; with
several seeds the mean and std of the test metrics go to summary.json beside them.
Re-running the same command resumes an interrupted run and skips finished ones.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minipelt.model.methods import METHODS, get_method
from minipelt.training import distributed
from minipelt.training.config import TrainConfig, add_run_options, run_config
from minipelt.training.options import parser
from minipelt.training.trainer import train


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_options(p, skip=("seed", "output_dir"))
    p.add_argument("--seeds", "--seed", type=parser(TrainConfig, "seed"), nargs="+", default=[42],
                   help="data seeds, one run each (default: %(default)s)")
    p.add_argument("--output-dir", help="default: runs/TASK-kK-METHOD; one seedN folder per seed inside")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or different run in the output dir")
    return p.parse_args(argv)


def run_configs(args) -> list[TrainConfig]:
    repeated = sorted({seed for seed in args.seeds if args.seeds.count(seed) > 1})
    if repeated:  # the summary's mean and std would count a run twice
        raise ValueError(f"--seeds repeats {', '.join(map(str, repeated))}: each seed is one run, give each once")
    data = args.task or Path(args.train_file or "").stem  # your own data: the train file's name
    root = Path(args.output_dir or f"runs/{data}-k{'full' if args.k is None else args.k}-{args.method}")
    return [run_config(args, seed=seed, output_dir=str(root / f"seed{seed}")) for seed in args.seeds]


def summarize(results: list[dict], path: Path) -> None:
    """Mean and std over seeds of every test metric (none without a scored test set)."""
    if not all("test" in r for r in results):
        print(f"no summary.json: the test set was not scored in every seed's run (see the notes above)")
        return
    summary = {"task": results[0]["task"], "method": results[0]["method"], "k": results[0]["k"],
               "seeds": [r["seed"] for r in results], "test": {}}
    for metric in results[0]["test"]:
        values = np.array([r["test"][metric] for r in results])
        summary["test"][metric] = {"mean": float(values.mean()), "std": float(values.std())}
    path.write_text(json.dumps(summary, indent=2))
    print("over seeds:", ", ".join(f"{m} {v['mean']:.4f} +- {v['std']:.4f}" for m, v in summary["test"].items()))


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        get_method(args.method)  # an unknown name is refused here, before the note about its defaults
        if args.method not in METHODS and (args.lr is None or args.epochs is None):
            print(f"note: {args.method} has no tuned defaults; using unipelt's lr/epochs unless given")
        runs = run_configs(args)
        results = [train(run, overwrite=args.overwrite) for run in runs]
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
    if len(results) > 1 and all(results):  # rank 0 only under torchrun: the other ranks return {}
        summarize(results, Path(runs[0].output_dir).parent / "summary.json")
    distributed.shutdown()


if __name__ == "__main__":
    main()
