"""The paper's numbers (Mao et al., ACL 2022; BERT-base) that the benchmarks are set beside, and its order."""
from minipelt.model.methods import METHODS

# Table 1's grid: GLUE tasks in its column order, K training examples, 5 data seeds.
TASKS = ("sst2", "mrpc", "cola", "rte", "qnli", "stsb", "mnli", "qqp")
KS = (100, 500, 1000)
SEEDS = (1, 2, 3, 4, 5)

# Table 1: test main metric x100 (GLUE dev as test), mean of 5 seeds, columns in TASKS order; its Avg.
# column below, as printed (from unrounded scores: the mean of a row can differ by up to 0.01).
TABLE1 = {
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
TABLE1_AVG = {
    100: {"finetune": 60.02, "bitfit": 48.64, "adapter": 58.24, "prefix": 47.99, "lora": 49.26,
          "unipelt-ap": 60.80, "unipelt": 62.59},
    500: {"finetune": 68.93, "bitfit": 60.30, "adapter": 68.02, "prefix": 67.32, "lora": 65.86,
          "unipelt-ap": 69.79, "unipelt": 69.98},
    1000: {"finetune": 71.93, "bitfit": 66.51, "adapter": 70.95, "prefix": 71.81, "lora": 72.28,
           "unipelt-ap": 72.61, "unipelt": 73.31},
}

# Table 4 (relative to fine-tuning): trainable parameters, training time %, inference time %.
TABLE4 = {
    "finetune": ("110M", 100, 100),
    "bitfit": ("103K", 65, 102),
    "prefix": ("184K", 56, 114),
    "lora": ("295K", 53, 105),
    "adapter": ("895K", 55, 107),
    "unipelt-ap": ("1.1M", 55, 118),
    "unipelt": ("1.4M", 67, 127),
}


def title(method: str) -> str:
    """A method's name in the paper's tables (a combination keeps its own)."""
    return METHODS[method].title if method in METHODS else method


def method_order(method: str) -> tuple:
    return list(METHODS).index(method) if method in METHODS else len(METHODS), method  # others after the paper's


def k_order(k: int | None) -> float:
    return float("inf") if k is None else k  # 'full' after every K


def k_label(k: int | None) -> str:
    return "full" if k is None else str(k)


def ordered_methods(methods) -> list[str]:
    return sorted(set(methods), key=method_order)


def ordered_ks(ks) -> list:
    return sorted(set(ks), key=k_order)
