"""docs/tour.md runs: every ```python block, in order, in one namespace, from the repository root;
what each block prints must be the ```text block that follows it (a block followed by none must
print nothing). So the tour cannot go stale: a block that fails, or whose printed result changes,
fails its test here.

Printed results are compared line by line, with the numbers taken out: the words must be equal;
integers equal; other numbers within one unit of their last printed digit, or FLOAT_REL relative,
or FLOAT_ABS absolute (a few steps of training on another CPU may round differently in the last
digits).
"""
import contextlib
import io
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "docs" / "tour.md"
BERT_BASE_CONFIG = ROOT.parent / "shared" / "configs" / "bert-base-uncased.json"  # the tour's Table 4 step
FLOAT_REL, FLOAT_ABS = 1e-3, 1e-4
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def read_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, expected output or None) for each ```python block of a Markdown text."""
    blocks, lines, i = [], text.splitlines(), 0

    def fenced(start: int) -> tuple[str, int]:  # the body of the fence opened at `start`, and the line after it
        end = lines.index("```", start + 1)
        return "\n".join(lines[start + 1:end]), end + 1

    while i < len(lines):
        if lines[i] == "```python":
            start = i
            code, i = fenced(i)
            while i < len(lines) and not lines[i].strip():
                i += 1
            expected = None
            if i < len(lines) and lines[i] == "```text":
                expected, i = fenced(i)
            blocks.append((start + 1, code, expected))
        else:
            i += 1
    return blocks


def same_number(got: str, want: str) -> bool:
    if re.fullmatch(r"[-+]?\d+", want):
        return got == want
    decimals = re.fullmatch(r"[-+]?\d*\.(\d*)", want)  # one unit in its last digit: rounding may flip it
    last_digit = 10.0 ** -len(decimals.group(1)) if decimals else 0.0
    a, b = float(got), float(want)
    return abs(a - b) <= 1.0001 * last_digit or math.isclose(a, b, rel_tol=FLOAT_REL, abs_tol=FLOAT_ABS)


def differences(got: str, want: str) -> list[str]:
    """The lines where `got` is not `want` under the rules of the module docstring."""
    got_lines, want_lines = got.rstrip("\n").splitlines(), want.rstrip("\n").splitlines()
    if len(got_lines) != len(want_lines):
        return [f"{len(got_lines)} lines printed, {len(want_lines)} expected:\n{got}"]
    wrong = []
    for g, w in zip(got_lines, want_lines):
        g, w = g.rstrip(), w.rstrip()
        words_equal = NUMBER.sub("#", g) == NUMBER.sub("#", w)
        if not (words_equal and all(map(same_number, NUMBER.findall(g), NUMBER.findall(w)))):
            wrong.append(f"printed:  {g}\nexpected: {w}")
    return wrong


BLOCKS = read_blocks(TOUR.read_text())


class Tour:
    """Runs the blocks in order, each once, in one namespace; keeps what each printed or raised."""

    def __init__(self):
        self.namespace = {"__name__": "tour"}
        self.printed: list[str] = []
        self.failed: int | None = None

    def run_to(self, n: int) -> None:
        while len(self.printed) <= n:
            line, code, _ = BLOCKS[len(self.printed)]
            if self.failed is not None:
                pytest.fail(f"an earlier block (docs/tour.md line {BLOCKS[self.failed][0]}) failed")
            out = io.StringIO()
            try:
                with contextlib.chdir(ROOT), contextlib.redirect_stdout(out):
                    exec(compile(code, f"docs/tour.md:{line}", "exec"), self.namespace)
            except BaseException:
                self.failed = len(self.printed)
                raise
            self.printed.append(out.getvalue())


@pytest.fixture(scope="module")
def tour(minilm_dir):
    if not BERT_BASE_CONFIG.is_file():
        pytest.skip(f"{BERT_BASE_CONFIG} not present (the tour's parameter-count step reads it)")
    return Tour()


def test_the_tour_has_its_steps():
    assert len(BLOCKS) >= 10 and all(expected is not None for _, _, expected in BLOCKS[:2])


@pytest.mark.parametrize("n", range(len(BLOCKS)), ids=[f"line{line}" for line, _, _ in BLOCKS])
def test_block_prints_what_the_tour_says(tour, n):
    tour.run_to(n)
    line, _, expected = BLOCKS[n]
    if expected is None:
        assert tour.printed[n] == "", f"docs/tour.md line {line} printed, but has no ```text block:\n{tour.printed[n]}"
    else:
        wrong = differences(tour.printed[n], expected)
        assert not wrong, f"docs/tour.md line {line}:\n" + "\n".join(wrong)


def test_the_comparison_catches_a_changed_result():
    """The collector itself: words must match, integers exactly, floats within the tolerance."""
    assert not differences("max diff 1.00004e-06, equal: True\n", "max diff 1.0e-06, equal: True")
    assert not differences("gate 0.50021", "gate 0.5001")
    assert not differences("loss 0.705", "loss 0.704")  # one unit in the last digit
    assert differences("gate 0.52", "gate 0.50") and differences("loss 0.706", "loss 0.704")
    assert differences("equal: False", "equal: True")
    assert differences("1,234,567 parameters", "1,234,568 parameters")
    assert differences("a\nb", "a")
    assert read_blocks("x\n```python\nprint(1)\n```\n\n```text\n1\n```\n```python\npass\n```\n") == [
        (2, "print(1)", "1"), (9, "pass", None)]
