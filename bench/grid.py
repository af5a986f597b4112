"""The accuracy grid: every task x K x method x seed trained as train.py does, and the paper's tables from it.

    python bench/grid.py --model minilm --data-dir ../shared/data/glue          # the whole grid
    python bench/grid.py --tasks stsb rte --ks 100 --methods lora unipelt --seeds 1 2
    python bench/grid.py --shard 1/4 --list                                     # what shard 1 of 4 runs
    python bench/grid.py --aggregate                                            # tables and plots

Each run trains into runs/grid/<task>/k<K>/<method>/seed<S>/ (results.json, best.safetensors).
Running the same command again resumes: train() returns the results of a finished run with the
same options without training, and continues an interrupted one from its state file.

--shard i/n keeps the runs whose position in the run list is i mod n. The list is sorted in a
fixed order (the paper's task and method order, then K, then seed) whatever order the options
were given in, so n processes started with the same selection split the grid between them
without talking to each other: one per GPU, or one per element of a cluster job array.

--aggregate reads every results.json under the runs directory and writes into bench/results/:
    grid_table1.md/.csv   Table 1: test main metric x100, mean +- std over seeds, beside the paper's
    grid_table2.md/.csv   Table 2's question: UniPELT vs the per-task best of adapter, prefix, LoRA
    grid_gates.png        UniPELT's mean gate values on the test set, by layer (needs matplotlib)
    grid_score_vs_k.png   score vs K for every method (needs matplotlib)
"""
import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import minipelt from this checkout
    sys.path.insert(0, str(ROOT))

from minipelt import data  # noqa: E402
from minipelt.methods import PeltConfig  # noqa: E402
from minipelt.trainer import TrainConfig, train  # noqa: E402

TASKS = ("sst2", "mrpc", "cola", "rte", "qnli", "stsb", "mnli", "qqp")  # the paper's column order
METHODS = ("finetune", "bitfit", "adapter", "prefix", "lora", "unipelt-ap", "unipelt")  # its row order
KS = (100, 500, 1000)
SEEDS = (1, 2, 3, 4, 5)
SUBMODULES = ("adapter", "prefix", "lora")  # UniPELT (APL)'s parts, for Table 2
NAMES = {"finetune": "Fine-tuning", "bitfit": "BitFit", "adapter": "Adapter", "prefix": "Prefix", "lora": "LoRA",
         "unipelt-ap": "UniPELT (AP)", "unipelt": "UniPELT (APL)"}
RUNS_DIR, RESULTS_DIR = ROOT / "runs" / "grid", ROOT / "bench" / "results"

# The paper's Table 1 (Mao et al., ACL 2022; BERT-base, GLUE dev as test, mean of 5 seeds), columns in
# TASKS order; its Avg. column below, as printed (from unrounded scores: the mean of a row can differ
# by up to 0.01).
PAPER_TABLE1 = {
    100: {"finetune": (79.61, 81.81, 16.56, 55.88, 69.25, 74.07, 42.56, 60.41),
          "bitfit": (62.94, 81.09, 2.71, 47.65, 42.46, 54.53, 38.16, 59.56),
          "adapter": (80.48, 81.40, 2.02, 52.78, 72.25, 77.32, 38.81, 60.88),
          "prefix": (60.87, 81.22, 0.00, 55.96, 71.91, 57.69, 40.58, 15.68),
          "lora": (81.56, 81.66, 13.31, 55.02, 73.52, 49.35, 39.60, 0.09),
          "unipelt-ap": (77.22, 81.86, 14.42, 55.52, 72.26, 79.14, 42.59, 63.41),
          "unipelt": (82.36, 81.71, 23.62, 55.45, 73.19, 79.37, 42.30, 62.70)},
    500: {"finetune": (85.67, 83.34, 36.47, 59.64, 77.30, 84.96, 55.84, 68.23),
          "bitfit": (83.44, 82.16, 3.32, 61.88, 69.15, 76.30, 40.82, 65.29),
          "adapter": (84.54, 82.53, 38.65, 59.35, 77.39, 83.52, 50.04, 68.12),
          "prefix": (83.65, 82.96, 38.16, 63.18, 78.50, 79.75, 58.06, 54.34),
          "lora": (84.98, 82.53, 39.86, 63.03, 79.46, 65.05, 56.54, 55.46),
          "unipelt-ap": (84.84, 83.25, 39.84, 63.32, 78.36, 84.53, 56.08, 68.14),
          "unipelt": (84.91, 83.56, 39.81, 64.12, 79.28, 85.26, 54.07, 68.87)},
    1000: {"finetune": (86.54, 84.87, 43.26, 62.31, 79.03, 86.39, 61.95, 71.09),
           "bitfit": (83.99, 83.95, 22.44, 62.89, 77.43, 79.04, 52.87, 69.50),
           "adapter": (85.60, 84.49, 42.33, 61.81, 79.68, 85.52, 57.86, 70.32),
           "prefix": (85.09, 83.66, 44.07, 66.71, 80.34, 82.38, 63.59, 68.58),
           "lora": (86.26, 86.04, 45.50, 65.63, 81.00, 81.56, 61.32, 70.89),
           "unipelt-ap": (86.17, 85.86, 44.33, 64.91, 80.65, 86.82, 62.17, 69.95),
           "unipelt": (87.06, 86.65, 45.44, 65.49, 81.22, 87.10, 62.49, 70.99)},
}
PAPER_TABLE1_AVG = {
    100: {"finetune": 60.02, "bitfit": 48.64, "adapter": 58.24, "prefix": 47.99, "lora": 49.26,
          "unipelt-ap": 60.80, "unipelt": 62.59},
    500: {"finetune": 68.93, "bitfit": 60.30, "adapter": 68.02, "prefix": 67.32, "lora": 65.86,
          "unipelt-ap": 69.79, "unipelt": 69.98},
    1000: {"finetune": 71.93, "bitfit": 66.51, "adapter": 70.95, "prefix": 71.81, "lora": 72.28,
           "unipelt-ap": 72.61, "unipelt": 73.31},
}


# ---------------------------------------------------------------- the run list


@dataclass(frozen=True)
class Run:
    task: str
    k: int | None  # None: the full training set
    method: str
    seed: int

    @property
    def name(self) -> str:
        """The run's directory below the runs directory, e.g. 'stsb/k100/lora/seed1'."""
        return f"{self.task}/k{k_label(self.k)}/{self.method}/seed{self.seed}"

    def sort_key(self) -> tuple:
        return TASKS.index(self.task), k_order(self.k), method_order(self.method), self.seed


def k_order(k: int | None) -> float:
    return float("inf") if k is None else k  # 'full' after every K


def method_order(method: str) -> tuple:
    return METHODS.index(method) if method in METHODS else len(METHODS), method  # others after the paper's


def run_list(tasks, ks, methods, seeds) -> list[Run]:
    """Every run of the selection once, in the fixed order that --shard counts in."""
    for method in methods:
        PeltConfig.from_method(method)  # an unknown method fails here, before any training
    tasks = [data.get_task(t).name for t in tasks]
    return sorted({Run(t, k, m, s) for t in tasks for k in ks for m in methods for s in seeds}, key=Run.sort_key)


def parse_shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n, e.g. 0/4, not {value!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {value}: need 0 <= i < n (shards are numbered 0 to n-1)")
    return i, n


def train_config(run: Run, args) -> TrainConfig:
    return TrainConfig(task=run.task, k=run.k, method=run.method, seed=run.seed, model=args.model, lr=args.lr,
                       prefix_lr=args.prefix_lr, epochs=args.epochs, eval_every=args.eval_every, dev_size=args.dev_size, device=args.device,
                       precision=args.precision, data_dir=args.data_dir,
                       output_dir=str(Path(args.runs_dir) / run.name))


def run_grid(runs: list[Run], args) -> int:
    """Train every run; a failed run is reported and the others go on. Returns the number that failed."""
    failed = []
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.name}", flush=True)
        try:
            train(train_config(run, args))
        except (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError,
                FloatingPointError) as e:
            print(f"[{i}/{len(runs)}] {run.name} FAILED: {e}", flush=True)
            failed.append(run.name)
    if failed:
        print(f"{len(failed)} of {len(runs)} runs failed (fix and re-run; finished runs are skipped): "
              + ", ".join(failed))
    return len(failed)


# ---------------------------------------------------------------- reading the results


def load_results(runs_dir: Path) -> list[dict]:
    """Every results.json under runs_dir that has a test score."""
    results = []
    for path in sorted(Path(runs_dir).rglob("results.json")):
        result = json.loads(path.read_text())
        if "test" not in result:
            print(f"{path}: no test metrics (the test file was missing when it ran); left out")
            continue
        results.append(result)
    return results


def scores(results: list[dict]) -> dict[tuple, list[float]]:
    """(K, method, task) -> the test main metric x100 of each seed."""
    cells: dict[tuple, list[float]] = {}
    for r in results:
        value = 100 * r["test"][data.get_task(r["task"]).main_metric]
        cells.setdefault((r["k"], r["method"], r["task"]), []).append(value)
    return cells


def ordered_methods(methods) -> list[str]:
    return sorted(set(methods), key=method_order)


def ordered_ks(ks) -> list:
    return sorted(set(ks), key=k_order)


def k_label(k) -> str:
    return "full" if k is None else str(k)


def average(values: dict[str, float]) -> tuple[float | None, str]:
    """The mean over the tasks present, and '' or ' (n/8)' saying over how many it was taken."""
    if not values:
        return None, ""
    return float(np.mean(list(values.values()))), "" if len(values) == len(TASKS) else f" ({len(values)}/{len(TASKS)})"


def fmt(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.2f}" if signed else f"{value:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Missing values as empty fields, scores to 4 decimals."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([["" if v is None else round(v, 4) if isinstance(v, float) else v for v in row]
                          for row in rows])


COLUMNS = [data.get_task(t).dir_name for t in TASKS]
NOTE = ("Cells: the test main metric x100 (CoLA Matthews corr., MRPC and QQP F1, STS-B Spearman, the others "
        "accuracy; test = the GLUE dev set). Avg.: the mean over the tasks present; '(n/8)' marks a row averaged "
        "over only n of the 8 tasks, which is not comparable with a full average. '-': no results.")


# ---------------------------------------------------------------- Table 1


def seed_counts(cells: dict, k, method: str) -> str:
    """How many seeds the cells of a row have: '5', or '2-5' where they differ."""
    counts = [len(v) for (kk, m, _), v in cells.items() if (kk, m) == (k, method)]
    return str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def table1(cells: dict, models: str) -> tuple[str, list[list]]:
    """Markdown (ours, then the paper's, for every K we have) and CSV rows."""
    parts = [f"# Few-shot GLUE: Table 1 of the paper, ours beside it\n\nOurs: model {models}, mean ± std over "
             f"seeds (population std). The paper: BERT-base, mean of 5 seeds.\n\n{NOTE}"]
    rows_csv = []
    for k in ordered_ks(key[0] for key in cells):
        rows = []
        for method in ordered_methods(m for (kk, m, _) in cells if kk == k):
            paper = PAPER_TABLE1.get(k, {}).get(method)
            row, means = [NAMES.get(method, method)], {}
            for i, t in enumerate(TASKS):
                values = cells.get((k, method, t))
                paper_value = None if paper is None else paper[i]
                if values is None:
                    row.append("-")
                    rows_csv.append([k_label(k), method, t, None, None, 0, None, paper_value])
                    continue
                means[t], std = float(np.mean(values)), float(np.std(values))
                row.append(f"{means[t]:.2f} ± {std:.2f}")
                rows_csv.append([k_label(k), method, t, means[t], std, len(values), None, paper_value])
            avg, over = average(means)
            rows.append(row + [fmt(avg) + over, seed_counts(cells, k, method)])
            rows_csv.append([k_label(k), method, "avg", avg, None, None, len(means),
                             PAPER_TABLE1_AVG.get(k, {}).get(method)])
        parts.append(f"## K = {k_label(k)}: ours\n\n" + markdown_table(["Method", *COLUMNS, "Avg.", "Seeds"], rows))
        if k in PAPER_TABLE1:
            paper_rows = [[NAMES[m], *(f"{v:.2f}" for v in values), f"{PAPER_TABLE1_AVG[k][m]:.2f}"]
                          for m, values in PAPER_TABLE1[k].items()]
            parts.append(f"## K = {k}: the paper's Table 1\n\n"
                         + markdown_table(["Method", *COLUMNS, "Avg."], paper_rows))
        else:
            parts.append(f"(The paper has no numbers for K = {k_label(k)}: it reports K = 100, 500, 1000.)")
    return "\n\n".join(parts) + "\n", rows_csv


# ---------------------------------------------------------------- Table 2


def versus_best(means_by_task: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per task with adapter, prefix, LoRA and UniPELT all present: the best submodule, its score,
    UniPELT's score and the difference."""
    out = {}
    for task, means in means_by_task.items():
        if all(m in means for m in (*SUBMODULES, "unipelt")):
            best = max(SUBMODULES, key=lambda m: means[m])
            out[task] = {"best": best, "best_score": means[best], "unipelt": means["unipelt"],
                         "difference": means["unipelt"] - means[best]}
    return out


def table2_row(label: str, comparison: dict[str, dict], field: str) -> list[str]:
    values = {t: c[field] for t, c in comparison.items()}
    signed = field == "difference"
    cells = [fmt(values.get(t), signed) + (f" ({NAMES[comparison[t]['best']]})" if field == "best_score"
                                           and t in values else "") for t in TASKS]
    avg, over = average(values)
    return [label, *cells, fmt(avg, signed) + over]


def table2(cells: dict) -> tuple[str, list[list]]:
    """UniPELT (APL) against max(adapter, prefix, LoRA) per task: the upper bound of picking the best
    single method for each task, which the paper says UniPELT usually beats."""
    parts = ["# UniPELT vs the per-task best of its submodules (the paper's Table 2 question)\n\n"
             "For each task: the best of adapter, prefix and LoRA on that task (an upper bound for choosing "
             "one method per task) against UniPELT (APL), on the test main metric x100, mean over seeds. "
             f"A task counts only where all four methods have results. {NOTE}"]
    fields = ("best", "best_score", "unipelt", "difference")
    rows_csv = []
    for k in ordered_ks(key[0] for key in cells):
        ours = versus_best({t: {m: float(np.mean(v)) for (kk, m, tt), v in cells.items() if (kk, tt) == (k, t)}
                            for t in TASKS})
        paper = versus_best({t: {m: scores_[i] for m, scores_ in PAPER_TABLE1[k].items()}
                             for i, t in enumerate(TASKS)}) if k in PAPER_TABLE1 else {}
        for t in TASKS:
            rows_csv.append([k_label(k), t, *(ours.get(t, {}).get(f) for f in fields),
                             *(paper.get(t, {}).get(f) for f in fields)])
        averages = [average({t: c[f] for t, c in comparison.items()})[0]
                    for comparison in (ours, paper) for f in fields[1:]]
        rows_csv.append([k_label(k), "avg", None, *averages[:3], None, *averages[3:]])
        rows = [table2_row("ours: best of A/P/L", ours, "best_score"),
                table2_row("ours: UniPELT (APL)", ours, "unipelt"),
                table2_row("ours: UniPELT − best", ours, "difference")]
        if paper:
            rows += [table2_row("paper: best of A/P/L", paper, "best_score"),
                     table2_row("paper: UniPELT (APL)", paper, "unipelt"),
                     table2_row("paper: UniPELT − best", paper, "difference")]
        missing = "" if ours else "\n\n(No task has results for all of adapter, prefix, LoRA and UniPELT at this K.)"
        parts.append(f"## K = {k_label(k)}\n\n" + markdown_table(["", *COLUMNS, "Avg."], rows) + missing)
    return "\n\n".join(parts) + "\n", rows_csv


# ---------------------------------------------------------------- plots


def import_pyplot():
    """matplotlib is an optional bench dependency: None (with a message) where it is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install -r bench/requirements.txt); "
              "the tables are written all the same")
        return None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def legend_entries(axes) -> tuple[list, list]:
    """The lines of the panel that has the most, for one legend above all panels."""
    return max((ax.get_legend_handles_labels() for ax in axes.flat), key=lambda entries: len(entries[1]))


def plot_gates(plt, results: list[dict], path: Path) -> None:
    """UniPELT (APL)'s mean test-set gate value by layer, one panel per K and task, one line per gate."""
    gates: dict[tuple, list[dict]] = {}
    for r in results:
        if r["method"] == "unipelt" and r.get("gates"):
            gates.setdefault((r["k"], r["task"]), []).append(r["gates"])
    if not gates:
        print("no UniPELT results with gate values: grid_gates.png not written")
        return
    ks, tasks = ordered_ks(k for k, _ in gates), [t for t in TASKS if any(tt == t for _, tt in gates)]
    fig, axes = plt.subplots(len(ks), len(tasks), figsize=(3.2 * len(tasks), 2.4 * len(ks) + 0.8), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for (row, k), (col, t) in ((rk, ct) for rk in enumerate(ks) for ct in enumerate(tasks)):
        ax = axes[row][col]
        ax.set_title(f"{data.get_task(t).dir_name}, K = {k_label(k)}", fontsize=9)
        seeds = gates.get((k, t), [])  # one {"<layer>.<kind>": mean gate} per seed
        by_kind: dict[str, dict[int, list[float]]] = {}
        for seed_gates in seeds:
            for key, value in seed_gates.items():
                layer, kind = key.split(".", 1)
                by_kind.setdefault(kind, {}).setdefault(int(layer), []).append(value)
        for kind, layers in sorted(by_kind.items()):
            ax.plot(sorted(layers), [np.mean(layers[n]) for n in sorted(layers)], marker="o", markersize=3,
                    label=kind)
        ax.set_ylim(0, 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if row == len(ks) - 1:
            ax.set_xlabel("layer")
        if col == 0:
            ax.set_ylabel("mean gate value")
    handles, labels = legend_entries(axes)
    fig.suptitle("UniPELT (APL): mean gate value on the test set, by layer (mean over examples and seeds)")
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def plot_score_vs_k(plt, cells: dict, path: Path) -> None:
    """Test main metric x100 against K, one panel per task, one line per method (error bars: std over seeds)."""
    cells = {key: v for key, v in cells.items() if key[0] is not None}  # 'full' has no place on a K axis
    if not cells:
        print("no few-shot results: grid_score_vs_k.png not written")
        return
    tasks = [t for t in TASKS if any(key[2] == t for key in cells)]
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows + 0.8), squeeze=False, layout="constrained")
    methods = ordered_methods(key[1] for key in cells)
    for ax, t in zip(axes.flat, tasks):
        for method in methods:
            ks = ordered_ks(k for (k, m, tt) in cells if (m, tt) == (method, t))
            if ks:
                values = [cells[k, method, t] for k in ks]
                ax.errorbar(ks, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                            markersize=3, capsize=2, label=NAMES.get(method, method))
        ax.set_title(f"{data.get_task(t).dir_name} ({data.get_task(t).main_metric})", fontsize=9)
        ax.set_xscale("log")
        ax.set_xticks(ordered_ks(key[0] for key in cells), [k_label(k) for k in ordered_ks(key[0] for key in cells)])
        ax.minorticks_off()
        ax.set_xlabel("K (training examples)")
        ax.set_ylabel("test score x100")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    handles, labels = legend_entries(axes)
    fig.suptitle("Test main metric x100 against K (mean ± std over seeds)")
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 7), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def aggregate(runs_dir: Path, results_dir: Path) -> None:
    results = load_results(runs_dir)
    if not results:
        raise SystemExit(f"error: no results.json under {runs_dir}: run the grid first (or pass --runs-dir)")
    results_dir.mkdir(parents=True, exist_ok=True)
    cells = scores(results)
    models = ", ".join(sorted({r["model"] for r in results}))
    text, rows = table1(cells, models)
    (results_dir / "grid_table1.md").write_text(text)
    write_csv(results_dir / "grid_table1.csv", ["k", "method", "task", "mean", "std", "seeds", "tasks_averaged",
                                                "paper"], rows)
    text, rows = table2(cells)
    (results_dir / "grid_table2.md").write_text(text)
    write_csv(results_dir / "grid_table2.csv", ["k", "task", "best_submodule", "best_submodule_score", "unipelt",
                                                "difference", "paper_best_submodule", "paper_best_submodule_score",
                                                "paper_unipelt", "paper_difference"], rows)
    print(f"{len(results)} runs -> {results_dir}/grid_table1.md/.csv, grid_table2.md/.csv")
    plt = import_pyplot()
    if plt is not None:
        plot_gates(plt, results, results_dir / "grid_gates.png")
        plot_score_vs_k(plt, cells, results_dir / "grid_score_vs_k.png")


# ---------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    summary, _, details = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"default: all ({' '.join(TASKS)})")
    p.add_argument("--ks", type=data.parse_k, nargs="+", default=list(KS), help="default: 100 500 1000 ('full' too)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"default: {' '.join(METHODS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="default: 1 2 3 4 5")
    p.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="i/n",
                   help="run only the runs at positions i, i+n, i+2n, ... of the sorted run list (default 0/1)")
    p.add_argument("--list", action="store_true", help="print this shard's runs and exit")
    p.add_argument("--aggregate", action="store_true", help="write the tables and plots from the finished runs")
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="default: runs/grid in the repository")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="tables and plots (default: bench/results)")
    t = p.add_argument_group("training options, as in train.py (the same for every run)")
    t.add_argument("--model", default="bert-base-uncased", help="a fetched name (minilm, bert-base-uncased) or a dir")
    t.add_argument("--data-dir", help="a GLUE directory in the tsv layout (default: $MINIPELT_GLUE_DIR, else the hub)")
    t.add_argument("--device", default="auto")
    t.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    t.add_argument("--epochs", type=int, help="default: per method, see README")
    t.add_argument("--lr", type=float, help="default: per method, see README")
    t.add_argument("--prefix-lr", type=float, help="the prefix MLP's learning rate (default: per method)")
    t.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: every epoch)")
    t.add_argument("--dev-size", type=int, default=1000, help="dev examples after the K train ones (1000 in the paper)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.aggregate:
        aggregate(args.runs_dir, args.results_dir)
        return 0
    try:
        runs = run_list(args.tasks, args.ks, args.methods, args.seeds)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    i, n = args.shard
    mine = runs[i::n]
    if args.list:
        print(f"# shard {i}/{n}: {len(mine)} of {len(runs)} runs")
        for index in range(i, len(runs), n):
            print(index, runs[index].name)
        return 0
    return 1 if run_grid(mine, args) else 0


if __name__ == "__main__":
    sys.exit(main())
