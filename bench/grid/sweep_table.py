"""The sweep's table: every recorded sweep run (bench/results/sweep/) -> bench/results/sweep.md.

    python bench/grid/sweep_table.py --record runs/sweep    # copy finished runs' results.json into the records
    python bench/grid/sweep_table.py                        # the table from the records

bench/grid/sweep.sh trains into runs/sweep/<task>/<method>-lr<lr>-plr<plr>-<precision>/seed<S>/; the
records keep only results.json, as bench/results/sweep/<task>/<setting>/seed<S>.json, to commit.
Dev is the 1000 examples after the K training ones (selection); test is GLUE's dev set (information).
"""
import argparse
import json
import shutil
from pathlib import Path

from minipelt.data.glue import get_task

RECORDS = Path(__file__).resolve().parents[1] / "results" / "sweep"


def record(runs: Path) -> None:
    for path in sorted(runs.rglob("results.json")):
        task, setting, seed = path.relative_to(runs).parts[:3]
        target = RECORDS / task / setting / f"{seed}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def table() -> str:
    lines = ["| task | method | lr | prefix MLP lr | precision | seed | best dev | test | best step | wall s |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for path in sorted(RECORDS.rglob("*.json")):
        r = json.loads(path.read_text())
        metric, o = get_task(r["task"]).main_metric, r["options"]
        lines.append(f"| {r['task']} | {r['method']} | {o['lr']:g} | {o['prefix_lr']:g} | {o['precision']} | "
                     f"{r['seed']} | {r['dev'][metric]:.3f} | {r['test'][metric]:.3f} | {r['best_step']} | "
                     f"{r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    p.add_argument("--record", type=Path, metavar="RUNS", help="copy the finished runs under RUNS first")
    args = p.parse_args()
    if args.record:
        record(args.record)
    (RECORDS.parent / "sweep.md").write_text(f"# Sweep (bench/grid/sweep.sh): {get_task('stsb').name} and CoLA dev, K = 100, "
                                             "MiniLM\n\n" + table())
    print(table())
