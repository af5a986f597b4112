"""Benchmarks: the accuracy grid (grid.py, report.py), speed and memory (speed.py, speed_report.py), the
paper's numbers they are compared with (paper.py)."""
