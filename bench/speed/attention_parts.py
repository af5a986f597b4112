"""The CPU training path of one attention (minipelt/model/attention.py) against the same computation
through autograd and F.dropout, and the dropout draws on their own.

    python bench/speed/attention_parts.py                       # MiniLM heads (12 x 32), 16 x 128 and 4 x 512

Rows, per shape (B, T), one attention of h = 12 heads of d = 32, dropout 0.1, fp32, 1 thread:
    autograd     softmax(q K^T / sqrt(d) + bias), F.dropout, @ V, log Z_T = s_j - log p_j at the
                 argmax key: the same forward as `attend`, differentiated by autograd (the code
                 before WrittenOut)
    attend       minipelt.model.attention.attend: backward by hand, dropout from 16-bit draws
each forward + backward, with and without log Z_T: median process CPU time of --steps calls,
and the bytes autograd keeps for the backward (saved-tensor hooks). Then the dropout alone on
(B, h, T, T) probabilities: F.dropout, attention.dropout, and the softmax for scale.
Results: bench/results/attention_parts_cpu.md.
"""
import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.speed.measure import timed
from bench.grid.report import markdown_table
from minipelt.model.attention import attend, dropout

RESULTS = Path(__file__).resolve().parents[1] / "results" / "attention_parts_cpu.md"
HEADS, HEAD_DIM, P = 12, 32, 0.1


def autograd_attention(q, k, v, bias, p, with_log_z):
    """attend's training forward in plain autograd ops, with F.dropout."""
    k = k * q.size(-1) ** -0.5
    probs = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)
    out = F.dropout(probs, p) @ v
    if not with_log_z:
        return out, None
    j = probs.detach().argmax(dim=-1, keepdim=True)
    s_j = (q * k.gather(2, j.expand(-1, -1, -1, k.size(-1)))).sum(dim=-1, keepdim=True)
    return out, s_j - probs.gather(-1, j).log()


def train_call(fn, B, T, with_log_z):
    """One forward + backward; -> the bytes kept for the backward."""
    q, k, v = (torch.randn(B, HEADS, T, HEAD_DIM, requires_grad=True) for _ in range(3))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        if fn is attend:
            out, log_z = attend(q, k, v, torch.ones(B, 1, 1, T, dtype=torch.bool), P, with_log_z)
        else:
            out, log_z = fn(q, k, v, torch.zeros(B, 1, 1, T), P, with_log_z)
        loss = out.sum() + (log_z.sum() if with_log_z else 0)
    loss.backward()
    return sum(kept)


def median_ms(fn, steps) -> float:
    fn()  # warm-up
    return 1000 * statistics.median(timed(fn, steps, torch.device("cpu"))[1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="16x128,4x512", help="BATCHxLENGTH, comma-separated")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for shape in args.shapes.split(","):
        B, T = map(int, shape.split("x"))
        for with_log_z in (False, True):
            times = {fn.__name__: median_ms(lambda: train_call(fn, B, T, with_log_z), args.steps)
                     for fn in (autograd_attention, attend)}
            kept = {fn.__name__: train_call(fn, B, T, with_log_z) / 2**20 for fn in (autograd_attention, attend)}
            rows.append([f"{B} x {T}", "forward + backward" + (" with log Z_T" if with_log_z else ""),
                         f"{times['autograd_attention']:.0f}", f"{times['attend']:.0f}",
                         f"{times['attend'] / times['autograd_attention']:.2f}",
                         f"{kept['autograd_attention']:.0f}", f"{kept['attend']:.0f}"])
        probs = torch.softmax(torch.randn(B, HEADS, T, T), dim=-1)
        times = [median_ms(f, args.steps) for f in (lambda: F.dropout(probs, P), lambda: dropout(probs, P))]
        softmax = median_ms(lambda: torch.softmax(probs, dim=-1), args.steps)
        rows.append([f"{B} x {T}", f"dropout of (B, h, T, T) (softmax: {softmax:.0f} ms)", f"{times[0]:.0f}",
                     f"{times[1]:.0f}", f"{times[1] / times[0]:.2f}", "", ""])
    table = markdown_table(["shape", "what", "autograd / F.dropout ms", "minipelt ms", "ratio",
                            "kept MiB (autograd)", "kept MiB (minipelt)"], rows)
    text = (f"# One attention's CPU training path\n\n`python bench/speed/attention_parts.py --shapes {args.shapes} "
            f"--steps {args.steps}`\n\nh = {HEADS}, d = {HEAD_DIM}, dropout {P}, fp32, 1 thread, median process "
            f"CPU time of {args.steps} calls after 1 warm-up; torch {torch.__version__}.\n\n{table}\n")
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
