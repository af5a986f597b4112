"""Run options: fields of a config dataclass that are also command-line options.

    lr: float | None = option(None, "AdamW learning rate (unset: the method's)", minimum=0)

From the field alone, `add_arguments` writes its --flag (a new field is a new flag), and `check`
refuses an impossible value naming the flag, when the command line is parsed and in code.
"""
import argparse
import typing
from dataclasses import MISSING, Field, field, fields


def option(default=MISSING, help: str = "", minimum=None, maximum=None, choices=None, parse=None):
    """A dataclass field that is a run option; `parse` reads its command-line text (default: its type)."""
    return field(default=default, metadata=dict(help=help, minimum=minimum, maximum=maximum, choices=choices,
                                                parse=parse))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def problem(f: Field, value) -> str | None:
    """What is wrong with `value` for the option `f`, or None if nothing (None itself means unset)."""
    m = f.metadata
    if value is None:
        return None
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


def value_type(f: Field) -> type:
    """The field's type without its '| None': int, float, str or bool."""
    return next((t for t in typing.get_args(f.type) if t is not type(None)), f.type)


def parser(config_class, name: str):
    """The argparse `type` of an option: read the text, then refuse a value out of range."""
    f = next(f for f in fields(config_class) if f.name == name)

    def read(text: str):
        value = (f.metadata["parse"] or value_type(f))(text)
        if message := problem(f, value):
            raise argparse.ArgumentTypeError(message)
        return value

    read.__name__ = value_type(f).__name__  # argparse's "invalid int value: 'x'"
    return read


def add_arguments(parser_or_group, config_class, skip=(), unset_by_default: bool = False) -> None:
    """A --flag for every option field of `config_class` but those in `skip`.

    unset_by_default: every flag defaults to None, so that only what the user gave is recorded
    (e.g. a run's method options); the help still names the config's default."""
    for f in fields(config_class):
        if "help" not in f.metadata or f.name in skip:
            continue
        shown = None if f.default is MISSING or value_type(f) is bool else f.default  # a switch's help says it
        help = f.metadata["help"] + ("" if shown is None else f" (default: {shown})")
        default = None if unset_by_default or f.default is MISSING else f.default
        kind = dict(action=argparse.BooleanOptionalAction) if value_type(f) is bool else dict(
            type=parser(config_class, f.name), required=f.default is MISSING, choices=f.metadata["choices"])
        parser_or_group.add_argument(flag(f.name), default=default, help=help, **kind)
