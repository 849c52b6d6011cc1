"""A method's options as one typed class: every option's type, default, bounds, help and the source of
its default, declared once (`option(...)` fields on a `MethodOptions` class).

Everything that takes a method's options reads this one description: the CLI derives its flags from it
(`rarecli.cli._method_flags`), `rare bench rarebench --set KEY=VALUE` and the config file's `methods:`
section parse strings through it, and the Python API passes keyword arguments to it. The options are
checked once, when the instance is built (`parse`), and the instance is what the method runs with.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple, Self

from rarecli.errors import InputError


class OptionInfo(NamedTuple):
    """What a field of a `MethodOptions` class says about itself."""

    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound `low` itself is not allowed (a learning rate of 0)
    choices: tuple[str, ...] = ()
    source: str = ""  # where the default comes from (a paper's section, the authors' code)
    # A narrower upper bound for the command line only, a guard against typos (the library takes any
    # value the method can run with, e.g. SeedSelect's learning rate).
    flag_high: float | None = None
    what: str = "option"  # what it is, in two words, for messages ("anchor weight")


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] = (),
    source: str = "",
    flag_high: float | None = None,
    what: str = "option",
) -> Any:
    """A field of a `MethodOptions` class."""
    return _Field(default, OptionInfo(help, low, high, low_open, choices, source, flag_high, what))


class _Field:
    """An `option(...)` in a class body, until the class collects it."""

    __slots__ = ("default", "info")

    def __init__(self, default: Any, info: OptionInfo) -> None:
        self.default, self.info = default, info


class Option(NamedTuple):
    """One option, resolved: its name, Python type, whether None is allowed, default and description."""

    name: str
    type: type
    nullable: bool
    default: Any
    info: OptionInfo

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, method: str) -> Any:
        """`value` if it is allowed; InputError naming the option otherwise. Ints pass as floats."""
        if value is None:
            if self.nullable:
                return None
            raise InputError(f"{method} option {self.name} needs a value")
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InputError(f"{method} option {self.name} must be {_TYPE_WORDS[expected]} (got {value!r})")
        info = self.info
        if expected is float and not math.isfinite(value):
            raise InputError(f"{method} option {self.name} must be a finite number (got {value!r})")
        if info.choices and value not in info.choices:
            raise InputError(
                f"{method} option {self.name} must be one of {', '.join(info.choices)} (got {value!r})"
            )
        if info.low is not None and (value < info.low or (info.low_open and value == info.low)):
            sign = ">" if info.low_open else ">="
            raise InputError(f"{method} option {self.name} must be {sign} {info.low:g} (got {value!r})")
        if info.high is not None and value > info.high:
            raise InputError(f"{method} option {self.name} must be <= {info.high:g} (got {value!r})")
        return value

    def from_text(self, text: str, method: str) -> Any:
        """A value written as text (`--set KEY=VALUE`, an environment variable), then checked."""
        if self.nullable and text.lower() in ("none", "null", ""):
            return None
        value: Any = text
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered not in _BOOLS:
                    raise ValueError(text)
                value = _BOOLS[lowered]
            elif self.type in (int, float):
                value = self.type(text)
        except ValueError:
            raise InputError(f"{method} option {self.name} must be {_TYPE_WORDS[self.type]} (got {text!r})") from None
        return self.check(value, method)


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
_BOOLS = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


class MethodOptions:
    """Base of every method's options class: a subclass declares its options as annotated class attributes,

        class SeedSelectOptions(MethodOptions):
            method: ClassVar[str] = "seedselect"
            iters: int | None = option(None, "Optimisation iterations.", low=1)

    and its instances are immutable, each option an attribute. (Not a dataclass: the CLI builds these
    classes at start-up, and a dataclass compiles code for each, which `rare --help` would pay for.)"""

    method: ClassVar[str] = "method"  # the method's name, for messages
    _fields: ClassVar[dict[str, _Field]] = {}
    _described: ClassVar[list[Option] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = dict(cls._fields)  # the parent's, in order, then this class's own
        for name in cls.__dict__.get("__annotations__", {}):
            value = cls.__dict__.get(name)
            if isinstance(value, _Field):
                fields[name] = value
                setattr(cls, name, value.default)
        cls._fields = fields
        cls._described = None

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self._fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option {', '.join(unknown)}")
        for name, f in self._fields.items():
            object.__setattr__(self, name, values.get(name, f.default))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: make another with {type(self).__name__}.parse")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.as_dict() == self.as_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.as_dict().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    @classmethod
    def describe(cls) -> list[Option]:
        """Every option, in declaration order."""
        if cls.__dict__.get("_described") is None:
            hints = typing.get_type_hints(cls)
            described = []
            for name, f in cls._fields.items():
                kind, nullable = _base_type(hints[name])
                described.append(Option(name, kind, nullable, f.default, f.info))
            cls._described = described
        return list(cls._described or [])

    @classmethod
    def describe_one(cls, name: str) -> Option:
        return next(o for o in cls.describe() if o.name == name)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(o.name for o in cls.describe())

    @classmethod
    def parse(cls, given: Mapping[str, Any] | None = None, *, text: bool = False) -> Self:
        """The options `given` names, the rest at their defaults: checked here, once. `text`: the values
        are strings to convert (`--set KEY=VALUE`). Unknown names are refused, with the ones that exist."""
        given = dict(given or {})
        by_name = {o.name: o for o in cls.describe()}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            known = ", ".join(sorted(by_name)) or "none"
            raise InputError(f"{cls.method} has no option {', '.join(unknown)}", hint=f"its options: {known}")
        values = {
            name: (by_name[name].from_text(value, cls.method) if text and isinstance(value, str) else
                   by_name[name].check(value, cls.method))
            for name, value in given.items()
        }  # fmt: skip
        made = cls(**values)
        made.validate()
        return made

    def validate(self) -> None:
        """Checks across options (each one's own bounds are checked already); override to add some."""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}



def _base_type(hint: Any) -> tuple[type, bool]:
    """(int, True) for `int | None`; the types an option can have are int, float, str and bool."""
    args = typing.get_args(hint)
    if not args:
        return hint, False
    kinds = [a for a in args if a is not type(None)]
    if len(kinds) != 1:
        raise TypeError(f"an option is one type, or one type or None: {hint}")
    return kinds[0], len(kinds) < len(args)
