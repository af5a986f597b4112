"""Config fields that declare their help and accepted values, checked when a config is made.

    lora_r: int = option(8, "LoRA rank r", minimum=1)

`check` (called in a config's __post_init__) refuses a value its field does not accept, naming the
field as its command-line flag; the command line itself (training/options.py) is built from the
same fields, so a new field is a new flag.
"""
import math
from dataclasses import MISSING, Field, field, fields


def option(default=MISSING, help: str = "", minimum=None, maximum=None, choices=None, parse=None, nargs=None):
    """A dataclass field that is a run option; `parse` reads its command-line text (default: its type);
    `nargs` ("+") makes it a list of values, each read by `parse`."""
    return field(default=default, metadata=dict(help=help, minimum=minimum, maximum=maximum, choices=choices,
                                                parse=parse, nargs=nargs))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def problem(f: Field, value) -> str | None:
    """What is wrong with `value` for the option `f`, or None if nothing (None itself means unset)."""
    m = f.metadata
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every comparison below
        return f"must be a finite number, got {value}"
    if m["choices"] is not None and value not in m["choices"]:
        return f"must be one of {', '.join(m['choices'])}, not {value!r}"
    if m["minimum"] is not None and value < m["minimum"]:
        return f"must be at least {m['minimum']}, got {value}"
    if m["maximum"] is not None and value > m["maximum"]:
        return f"must be at most {m['maximum']}, got {value}"
    return None


def check(config) -> None:
    """Refuse a field value that its option does not accept (call it in __post_init__)."""
    for f in fields(config):
        if "help" in f.metadata and (message := problem(f, getattr(config, f.name))):
            raise ValueError(f"{flag(f.name)} {message}")
