"""The grid's report: every recorded result (bench/results/grid) -> the paper's tables and the plots.

    python bench/grid/grid.py --aggregate        # writes into bench/results/:

    grid_table1.md/.csv   Table 1: test main metric x100, mean +- std over seeds, beside the paper's
    grid_table2.md/.csv   Table 2's question: UniPELT vs the per-task best of adapter, prefix, LoRA, and vs
                          fine-tuning, paired by seed
    grid_check.md         the defaults check: K = 100, seed 1, beside the trivial predictor (bench/grid/baselines.py)
    grid_table2.png       Table 2's question at a glance: UniPELT minus the best submodule and minus
                          fine-tuning, per task and K, each seed a dot, the paper's difference beside (needs matplotlib)
    grid_scores.png       every method's score, one panel per task and K, each seed a dot (needs matplotlib)
    grid_gates.png        UniPELT's mean gate values on the test set, by layer, one panel per task and K
"""
import csv
import json
from pathlib import Path

import numpy as np

from bench.grid import baselines, paper, plots
from bench.grid.paper import k_label, ordered_ks, ordered_methods, title
from minipelt.data.glue import get_task

SUBMODULES = ("adapter", "prefix", "lora")  # UniPELT (APL)'s parts, for Table 2


# ---------------------------------------------------------------- reading the results


def load_results(record_dir: Path) -> list[dict]:
    """Every recorded result (<task>/k<K>/<method>/seed<S>.json under record_dir) that has a test score."""
    results = []
    for path in sorted(Path(record_dir).rglob("*.json")):
        result = json.loads(path.read_text())
        if "test" not in result:
            print(f"{path}: no test metrics (the test file was missing when it ran); left out")
            continue
        results.append(result)
    return results


def scores(results: list[dict]) -> dict[tuple, dict[int, float]]:
    """(K, method, task) -> {seed: the test main metric x100}."""
    cells: dict[tuple, dict[int, float]] = {}
    for r in results:
        value = 100 * r["test"][get_task(r["task"]).main_metric]
        cells.setdefault((r["k"], r["method"], r["task"]), {})[r["seed"]] = value
    return cells


def average(values: dict[str, float]) -> tuple[float | None, str]:
    """The mean over the tasks present, and '' or ' (n/8)' saying over how many it was taken."""
    if not values:
        return None, ""
    n, of = len(values), len(paper.TASKS)
    return float(np.mean(list(values.values()))), "" if n == of else f" ({n}/{of})"


def fmt(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.2f}" if signed else f"{value:.2f}"


def mean_std(values: list[float], signed: bool) -> str:
    text = fmt(float(np.mean(values)), signed)
    return text + f" ± {np.std(values):.2f}" if len(values) > 1 else text


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


COLUMNS = [get_task(t).dir_name for t in paper.TASKS]
NOTE = ("Cells: the test main metric x100 (CoLA Matthews corr., MRPC and QQP F1, STS-B Spearman, the others "
        "accuracy; test = the GLUE dev set). Avg.: the mean over the tasks present; '(n/8)' marks a row averaged "
        "over only n of the 8 tasks, which is not comparable with a full average. '-': no results.")


# ---------------------------------------------------------------- Table 1


def seed_counts(cells: dict, k, method: str) -> str:
    """How many seeds the cells of a row have: '5', or '2-5' where they differ."""
    counts = [len(v) for (kk, m, _), v in cells.items() if (kk, m) == (k, method)]
    return str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def table1(cells: dict, models: str, settings: str, trivial: dict[str, float]) -> tuple[str, list[list]]:
    """Markdown (ours, then the paper's, for every K we have) and CSV rows; the trivial predictor's row
    (bench/grid/baselines.py) closes each of ours."""
    parts = [f"# Few-shot GLUE: Table 1 of the paper, ours beside it\n\nOurs: model {models}, mean ± std over "
             f"seeds (population std; none shown for one seed). The paper: BERT-base, mean of 5 seeds. "
             f"{settings}\n\n{NOTE} Trivial "
             "predictor: the best constant prediction on the test set (bench/grid/baselines.py)."]
    rows_csv = []
    for k in ordered_ks(key[0] for key in cells):
        rows = []
        for method in ordered_methods(m for (kk, m, _) in cells if kk == k):
            theirs = paper.TABLE1.get(k, {}).get(method)
            row, means = [title(method)], {}
            for i, t in enumerate(paper.TASKS):
                values = list(cells.get((k, method, t), {}).values()) or None
                paper_value = None if theirs is None else theirs[i]
                if values is None:
                    row.append("-")
                    rows_csv.append([k_label(k), method, t, None, None, 0, None, paper_value])
                    continue
                means[t], std = float(np.mean(values)), float(np.std(values))
                row.append(mean_std(values, signed=False))
                rows_csv.append([k_label(k), method, t, means[t], std, len(values), None, paper_value])
            avg, over = average(means)
            rows.append(row + [fmt(avg) + over, seed_counts(cells, k, method)])
            rows_csv.append([k_label(k), method, "avg", avg, None, None, len(means),
                             paper.TABLE1_AVG.get(k, {}).get(method)])
        if trivial:
            trivial_avg, over = average(trivial)
            rows.append(["trivial predictor", *(fmt(trivial.get(t)) for t in paper.TASKS), fmt(trivial_avg) + over, ""])
            rows_csv += [[k_label(k), "trivial", t, value, None, None, None, None] for t, value in trivial.items()]
        parts.append(f"## K = {k_label(k)}: ours\n\n" + markdown_table(["Method", *COLUMNS, "Avg.", "Seeds"], rows))
        if k in paper.TABLE1:
            paper_rows = [[title(m), *(f"{v:.2f}" for v in values), f"{paper.TABLE1_AVG[k][m]:.2f}"]
                          for m, values in paper.TABLE1[k].items()]
            parts.append(f"## K = {k}: the paper's Table 1\n\n"
                         + markdown_table(["Method", *COLUMNS, "Avg."], paper_rows))
        else:
            parts.append(f"(The paper has no numbers for K = {k_label(k)}: it reports K = 100, 500, 1000.)")
    return "\n\n".join(parts) + "\n", rows_csv


# ---------------------------------------------------------------- Table 2


def comparison(by_seed: dict[str, dict[int, float]], task: str) -> dict | None:
    """UniPELT (APL) on one task against the best of adapter, prefix and LoRA there (best by the mean
    over seeds) and against fine-tuning; None unless all five methods have results. The differences
    are paired by data seed (the same K examples), over the seeds every method has."""
    if not all(m in by_seed for m in (*SUBMODULES, "unipelt", "finetune")):
        return None
    best = max(SUBMODULES, key=lambda m: np.mean(list(by_seed[m].values())))
    seeds = sorted(set.intersection(*(set(by_seed[m]) for m in (best, "unipelt", "finetune"))))
    out = {"task": task, "best": best, "seeds": seeds}
    for name, method in (("best_score", best), ("unipelt", "unipelt"), ("finetune", "finetune")):
        out[name] = [by_seed[method][s] for s in seeds]
    for name, other in (("vs_best", "best_score"), ("vs_finetune", "finetune")):
        out[name] = [u - o for u, o in zip(out["unipelt"], out[other])]
    return out


def paper_comparison(k: int, task: str) -> dict | None:
    """The same comparison from the paper's Table 1 (means of 5 seeds: no per-seed values, no std)."""
    i = paper.TASKS.index(task)
    return comparison({m: {0: values[i]} for m, values in paper.TABLE1[k].items()}, task) if k in paper.TABLE1 else None


def compared_by_k(cells: dict) -> dict:
    """K -> {task: comparison} over the tasks where all five methods have results (paper.TASKS order)."""
    return {k: {t: c for t in paper.TASKS
                if (c := comparison({m: v for (kk, m, tt), v in cells.items() if (kk, tt) == (k, t)}, t))}
            for k in ordered_ks(key[0] for key in cells)}


FIELDS = {"best_score": "best of A/P/L", "unipelt": "UniPELT (APL)", "vs_best": "UniPELT − best of A/P/L",
          "finetune": "fine-tuning", "vs_finetune": "UniPELT − fine-tuning"}


def average_row(compared: list[dict], field: str) -> str:
    """The mean over tasks and, from the per-seed averages over the tasks (seeds common to all), its std."""
    if not compared:
        return "-"
    seeds = sorted(set.intersection(*(set(c["seeds"]) for c in compared)))
    per_seed = [np.mean([c[field][c["seeds"].index(s)] for c in compared]) for s in seeds]
    mean, over = average({c["task"]: float(np.mean(c[field])) for c in compared})
    return fmt(mean, field.startswith("vs_")) + (f" ± {np.std(per_seed):.2f}" if len(per_seed) > 1 else "") + over


def table2_rows(label: str, compared: dict[str, dict]) -> list[list[str]]:
    rows = [] if label == "paper" else [[f"{label}: seeds paired", *(str(len(compared[t]["seeds"])) if t in compared
                                                                      else "-" for t in paper.TASKS), ""]]
    for field, name in FIELDS.items():
        cells = ["-" if t not in compared else mean_std(compared[t][field], field.startswith("vs_"))
                 + (f" ({title(compared[t]['best'])})" if field == "best_score" else "") for t in paper.TASKS]
        rows.append([f"{label}: {name}", *cells, average_row(list(compared.values()), field)])
    return rows


def table2(cells: dict, settings: str) -> tuple[str, list[list]]:
    """UniPELT (APL) against max(adapter, prefix, LoRA) per task (the upper bound of picking the best
    single method for each task, which the paper says UniPELT usually beats) and against fine-tuning."""
    parts = ["# UniPELT vs the best of its submodules and vs fine-tuning (the paper's Table 2 question)\n\n"
             "For each task: the best of adapter, prefix and LoRA on that task by the mean over seeds (an upper "
             "bound for choosing one method per task), UniPELT (APL) and fine-tuning, on the test main metric x100. "
             "Differences are taken per data seed (the same K examples) and given as mean ± std over seeds; "
             "the Avg. std is that of the per-seed averages over the tasks. A task counts only where adapter, "
             f"prefix, LoRA, UniPELT and fine-tuning all have results. {settings}\n\n{NOTE}"]
    rows_csv = []
    for k, ours in compared_by_k(cells).items():
        theirs = {t: c for t in paper.TASKS if (c := paper_comparison(k, t))}
        for t in paper.TASKS:
            o, p = ours.get(t), theirs.get(t)
            rows_csv.append([k_label(k), t, o and o["best"], *(o and float(np.mean(o[f])) for f in FIELDS),
                             o and float(np.std(o["vs_best"])), o and float(np.std(o["vs_finetune"])),
                             o and len(o["seeds"]), p and p["best"], *(p and p[f][0] for f in FIELDS)])
        rows = table2_rows("ours", ours) + (table2_rows("paper", theirs) if theirs else [])
        missing = "" if ours else ("\n\n(No task has results for all of adapter, prefix, LoRA, UniPELT and "
                                   "fine-tuning at this K.)")
        parts.append(f"## K = {k_label(k)}\n\n" + markdown_table(["", *COLUMNS, "Avg."], rows) + missing)
    return "\n\n".join(parts) + "\n", rows_csv


TABLE2_CSV = ["k", "task", "best_submodule", "best_submodule_score", "unipelt", "difference", "finetune",
              "vs_finetune", "difference_std", "vs_finetune_std", "seeds", "paper_best_submodule",
              "paper_best_submodule_score", "paper_unipelt", "paper_difference", "paper_finetune",
              "paper_vs_finetune"]


# ---------------------------------------------------------------- the defaults check


CHECK_K, CHECK_SEED = 100, 1
MARGIN = 1.0  # points x100: a score this close to the trivial predictor's (or below it) is marked


def check_table(cells: dict, trivial: dict[str, float], results: list[dict]) -> str:
    """Markdown: K = 100, seed 1, every method and task, the trivial predictor last; '≤' marks a score
    within MARGIN points of the trivial predictor's or below it."""
    tasks = [t for t in paper.TASKS if any(key[2] == t and key[0] == CHECK_K for key in cells)]
    methods = ordered_methods(key[1] for key in cells if key[0] == CHECK_K)
    header = ["Method", *(get_task(t).dir_name for t in tasks)]
    rows, near = [], []
    for method in methods:
        row = [title(method)]
        for t in tasks:
            value = cells.get((CHECK_K, method, t), {}).get(CHECK_SEED)
            mark = t in trivial and value is not None and value <= trivial[t] + MARGIN
            row.append("-" if value is None else f"{value:.2f}" + (" ≤" if mark else ""))
            if mark:
                near.append(f"{title(method)} on {get_task(t).dir_name}")
        rows.append(row)
    rows.append(["trivial predictor", *(f"{trivial[t]:.2f}" if t in trivial else "-" for t in tasks)])
    intro = (f"# The defaults check: K = {CHECK_K}, seed {CHECK_SEED}, every method with its default settings\n\n"
             f"{baselines.settings_line(results)}\n\nTest main metric x100 (test = the GLUE dev set). Trivial "
             "predictor: the best constant prediction on the test set (majority class; for F1 the better class; "
             f"0 for Matthews corr. and Spearman). '≤': within {MARGIN:g} point of it or below.")
    return (f"{intro}\n\n{markdown_table(header, rows)}\n\nWithin a point of the trivial predictor or below: "
            + (", ".join(near) or "none") + ".\n")


def aggregate(record_dir: Path, results_dir: Path, data_dir=None) -> None:
    """Tables and plots from the records; data_dir (the GLUE tsv directory) for the trivial predictor."""
    results = load_results(record_dir)
    if not results:
        raise SystemExit(f"error: no recorded results under {record_dir}: run the grid first (or pass --record-dir)")
    results_dir.mkdir(parents=True, exist_ok=True)
    cells = scores(results)
    models = ", ".join(sorted({r["model"] for r in results}))
    settings = baselines.settings_line(results)
    trivial = baselines.trivial_scores(sorted({task for _, _, task in cells}), data_dir)
    text, rows = table1(cells, models, settings, trivial)
    (results_dir / "grid_table1.md").write_text(text)
    write_csv(results_dir / "grid_table1.csv", ["k", "method", "task", "mean", "std", "seeds", "tasks_averaged",
                                                "paper"], rows)
    text, rows = table2(cells, settings)
    (results_dir / "grid_table2.md").write_text(text)
    write_csv(results_dir / "grid_table2.csv", TABLE2_CSV, rows)
    (results_dir / "grid_check.md").write_text(check_table(cells, trivial, results))
    print(f"{len(results)} runs -> {results_dir}/grid_table1.md/.csv, grid_table2.md/.csv, grid_check.md")
    plt = plots.import_pyplot()
    if plt is not None:
        compared = compared_by_k(cells)
        theirs = {(k, t): paper_comparison(k, t) for k, ours in compared.items() for t in ours}
        plots.plot_table2(plt, compared, theirs, results_dir / "grid_table2.png")
        plots.plot_scores(plt, cells, trivial, results_dir / "grid_scores.png")
        plots.plot_gates(plt, results, results_dir / "grid_gates.png")
