"""How much of each layer's attention goes to the prefix: lam = G Z_P / (G Z_P + Z_T) (G = 1 when
ungated), averaged over the real tokens of the first test examples; for a fresh prefix (the
official init) and for trained checkpoints.

    python bench/grid/prefix_share.py --task stsb --data-dir ../shared/data/glue \\
        runs/grid/stsb/k100/prefix/seed1 runs/grid/stsb/k100/unipelt/seed1

Prints a table and writes it to bench/results/prefix_share_<task>.md. docs/protocol.md uses it to
explain why prefix-tuning alone collapses on STS-B at K = 100.
"""
import argparse
from pathlib import Path

import torch

from bench.grid.report import markdown_table
from minipelt.data.glue import load_split
from minipelt.data.tokenizer import Tokenizer
from minipelt.model.bert import BertModel
from minipelt.model.methods import PeltConfig
from minipelt.training.checkpoint import model_from_checkpoint
from minipelt.training.prefix_share import prefix_shares
from minipelt.training.runstate import BEST_FILE
from minipelt.weights import resolve_model

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def batch(model_dir: Path, task: str, data_dir, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test examples: input ids and attention mask (B, T), padded to the longest."""
    split = load_split(task, "test", data_dir)
    second = None if split.text_b is None else list(split.text_b[:n])
    rows = Tokenizer.from_pretrained(model_dir).encode(list(split.text_a[:n]), second)["input_ids"]
    T = max(map(len, rows))
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    return ids, torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="run directories (with best.safetensors) of prefix methods")
    p.add_argument("--model", default="minilm", help="the base model the runs were trained from")
    p.add_argument("--task", default="stsb")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--examples", type=int, default=64)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model_dir = resolve_model(args.model)
    ids, mask = batch(model_dir, args.task, args.data_dir, args.examples)
    rows = [["fresh prefix (official init)",
             *(f"{s:.3f}" for s in prefix_shares(BertModel.from_pretrained(model_dir, PeltConfig.from_method("prefix")),
                                                 ids, mask))]]
    for run in args.runs:
        bert = model_from_checkpoint(run / BEST_FILE, model_dir).bert
        rows.append([str(run), *(f"{s:.3f}" for s in prefix_shares(bert, ids, mask))])
    text = (f"# The prefix's share of the attention mass, {args.task}, first {args.examples} test examples\n\n"
            f"`python bench/grid/prefix_share.py --task {args.task} {' '.join(map(str, args.runs))}`\n\n"
            + markdown_table(["model", *(f"layer {i}" for i in range(len(rows[0]) - 1))], rows) + "\n")
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"prefix_share_{args.task}.md").write_text(text)


if __name__ == "__main__":
    main()
