"""The accuracy grid: every cell (task, K, method, seed) trained as train.py trains, and the paper's tables from it.

    python bench/grid/grid.py --model minilm --data-dir ../shared/data/glue          # the whole grid
    python bench/grid/grid.py --tasks stsb rte --ks 100 --methods lora unipelt --seeds 1 2
    python bench/grid/grid.py --shard 1/4 --list                                     # what shard 1 of 4 runs
    python bench/grid/grid.py --aggregate --data-dir ../shared/data/glue             # tables and plots

Each cell trains into runs/grid/<task>/k<K>/<method>/seed<S>/ (results.json, best.safetensors).
Running the same command again resumes: train() returns the results of a finished run with the
same options without training, and continues an interrupted one from its state file.

A finished cell's results.json is also recorded as bench/results/grid/<task>/k<K>/<method>/seed<S>.json
(--record-dir), small files meant to be committed: a recorded cell is never trained again, so a grid
grows over several sittings and machines, and --aggregate builds the tables from the records alone.

--shard i/n keeps the cells whose position in the cell list is i mod n. The list is sorted in a
fixed order (the paper's task and method order, then K, then seed) whatever order the options
were given in, so n processes started with the same selection split the grid between them
without talking to each other: one per GPU, or one per element of a cluster job array.

--aggregate writes the tables and plots of bench/grid/report.py, from the records, into bench/results/
(with --data-dir, beside the trivial predictor: bench/grid/baselines.py).
"""
import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.grid import paper, report
from bench.grid.paper import k_label, k_order, method_order
from minipelt.data.glue import get_task
from minipelt.model.methods import METHODS, get_method
from minipelt.training.checkpoint import atomic_write
from minipelt.training.config import OWN_DATA, TrainConfig, add_run_options, parse_k, run_config
from minipelt.training.options import parser
from minipelt.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR, RESULTS_DIR = ROOT / "runs" / "grid", ROOT / "bench" / "results"
RECORD_DIR = RESULTS_DIR / "grid"


@dataclass(frozen=True)
class Cell:
    """One cell of the grid; it trains one run."""
    task: str
    k: int | None  # None: the full training set
    method: str
    seed: int

    @property
    def name(self) -> str:
        """The run's directory below the runs directory, e.g. 'stsb/k100/lora/seed1'."""
        return f"{self.task}/k{k_label(self.k)}/{self.method}/seed{self.seed}"

    def sort_key(self) -> tuple:
        return paper.TASKS.index(self.task), k_order(self.k), method_order(self.method), self.seed


def cell_list(tasks, ks, methods, seeds) -> list[Cell]:
    """Every cell of the selection once, in the fixed order that --shard counts in."""
    for method in methods:
        get_method(method)  # an unknown method fails here, before any training
    tasks = [get_task(t).name for t in tasks]
    return sorted({Cell(t, k, m, s) for t in tasks for k in ks for m in methods for s in seeds}, key=Cell.sort_key)


def parse_shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n, e.g. 0/4, not {value!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {value}: need 0 <= i < n (shards are numbered 0 to n-1)")
    return i, n


def run_grid(cells: list[Cell], args) -> int:
    """Train every cell; a failed run is reported and the others go on. Returns the number that failed."""
    failed = []
    for i, cell in enumerate(cells, 1):
        record = Path(args.record_dir) / f"{cell.name}.json"
        if record.exists():
            print(f"[{i}/{len(cells)}] {cell.name}: recorded in {record}, skipped", flush=True)
            continue
        print(f"[{i}/{len(cells)}] {cell.name}", flush=True)
        try:
            results = train(run_config(args, task=cell.task, k=cell.k, method=cell.method, seed=cell.seed,
                                       output_dir=str(Path(args.runs_dir) / cell.name)))
            record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(record, lambda tmp: tmp.write_text(json.dumps(results, indent=2)))
        except (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError,
                FloatingPointError) as e:
            print(f"[{i}/{len(cells)}] {cell.name} FAILED: {e}", flush=True)
            failed.append(cell.name)
    if failed:
        print(f"{len(failed)} of {len(cells)} runs failed (fix and re-run; finished runs are skipped): "
              + ", ".join(failed))
    return len(failed)


def parse_args(argv=None) -> argparse.Namespace:
    summary, _, details = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(paper.TASKS), help="default: %(default)s")
    p.add_argument("--ks", type=parse_k, nargs="+", default=list(paper.KS), help="default: %(default)s ('full' too)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="default: %(default)s")
    p.add_argument("--seeds", type=parser(TrainConfig, "seed"), nargs="+", default=list(paper.SEEDS),
                   help="default: %(default)s")
    p.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="i/n",
                   help="run only the cells at positions i, i+n, i+2n, ... of the sorted cell list (default 0/1)")
    p.add_argument("--list", action="store_true", help="print this shard's cells and exit")
    p.add_argument("--aggregate", action="store_true", help="write the tables and plots from the finished runs")
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="default: runs/grid in the repository")
    p.add_argument("--record-dir", type=Path, default=RECORD_DIR,
                   help="finished cells' results, to commit; --aggregate reads them (default: bench/results/grid)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="tables and plots (default: bench/results)")
    add_run_options(p, skip=("task", "k", "method", "seed", "output_dir", "train_file", *OWN_DATA),  # GLUE only
                    title="training options, as in train.py (the same for every run)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.aggregate:
        report.aggregate(args.record_dir, args.results_dir, args.data_dir)
        return 0
    try:
        cells = cell_list(args.tasks, args.ks, args.methods, args.seeds)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    i, n = args.shard
    if args.list:
        print(f"# shard {i}/{n}: {len(cells[i::n])} of {len(cells)} cells")
        for index in range(i, len(cells), n):
            print(index, cells[index].name)
        return 0
    return 1 if run_grid(cells[i::n], args) else 0


if __name__ == "__main__":
    sys.exit(main())
