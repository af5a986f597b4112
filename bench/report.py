"""The grid's report: every recorded result (bench/results/grid) -> the paper's tables and the plots.

    python bench/grid.py --aggregate        # writes into bench/results/:

    grid_table1.md/.csv   Table 1: test main metric x100, mean +- std over seeds, beside the paper's
    grid_table2.md/.csv   Table 2's question: UniPELT vs the per-task best of adapter, prefix, LoRA
    grid_gates.png        UniPELT's mean gate values on the test set, by layer (needs matplotlib)
    grid_score_vs_k.png   score vs K for every method (needs matplotlib)
"""
import csv
import json
from pathlib import Path

import numpy as np

from bench import paper, plots
from bench.paper import k_label, ordered_ks, ordered_methods, title
from minipelt.glue import get_task

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


def scores(results: list[dict]) -> dict[tuple, list[float]]:
    """(K, method, task) -> the test main metric x100 of each seed."""
    cells: dict[tuple, list[float]] = {}
    for r in results:
        value = 100 * r["test"][get_task(r["task"]).main_metric]
        cells.setdefault((r["k"], r["method"], r["task"]), []).append(value)
    return cells



def average(values: dict[str, float]) -> tuple[float | None, str]:
    """The mean over the tasks present, and '' or ' (n/8)' saying over how many it was taken."""
    if not values:
        return None, ""
    n, of = len(values), len(paper.TASKS)
    return float(np.mean(list(values.values()))), "" if n == of else f" ({n}/{of})"


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


COLUMNS = [get_task(t).dir_name for t in paper.TASKS]
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
            theirs = paper.TABLE1.get(k, {}).get(method)
            row, means = [title(method)], {}
            for i, t in enumerate(paper.TASKS):
                values = cells.get((k, method, t))
                paper_value = None if theirs is None else theirs[i]
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
                             paper.TABLE1_AVG.get(k, {}).get(method)])
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
    cells = [fmt(values.get(t), signed) + (f" ({title(comparison[t]['best'])})" if field == "best_score"
                                           and t in values else "") for t in paper.TASKS]
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
                            for t in paper.TASKS})
        theirs = versus_best({t: {m: scores_[i] for m, scores_ in paper.TABLE1[k].items()}
                             for i, t in enumerate(paper.TASKS)}) if k in paper.TABLE1 else {}
        for t in paper.TASKS:
            rows_csv.append([k_label(k), t, *(ours.get(t, {}).get(f) for f in fields),
                             *(theirs.get(t, {}).get(f) for f in fields)])
        averages = [average({t: c[f] for t, c in comparison.items()})[0]
                    for comparison in (ours, theirs) for f in fields[1:]]
        rows_csv.append([k_label(k), "avg", None, *averages[:3], None, *averages[3:]])
        rows = [table2_row("ours: best of A/P/L", ours, "best_score"),
                table2_row("ours: UniPELT (APL)", ours, "unipelt"),
                table2_row("ours: UniPELT − best", ours, "difference")]
        if theirs:
            rows += [table2_row("paper: best of A/P/L", theirs, "best_score"),
                     table2_row("paper: UniPELT (APL)", theirs, "unipelt"),
                     table2_row("paper: UniPELT − best", theirs, "difference")]
        missing = "" if ours else "\n\n(No task has results for all of adapter, prefix, LoRA and UniPELT at this K.)"
        parts.append(f"## K = {k_label(k)}\n\n" + markdown_table(["", *COLUMNS, "Avg."], rows) + missing)
    return "\n\n".join(parts) + "\n", rows_csv


def aggregate(record_dir: Path, results_dir: Path) -> None:
    results = load_results(record_dir)
    if not results:
        raise SystemExit(f"error: no recorded results under {record_dir}: run the grid first (or pass --record-dir)")
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
    plt = plots.import_pyplot()
    if plt is not None:
        plots.plot_gates(plt, results, results_dir / "grid_gates.png")
        plots.plot_score_vs_k(plt, cells, results_dir / "grid_score_vs_k.png")
