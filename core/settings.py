"""Settings declared once: a config dataclass's fields carry their help, bounds and choices.

`setting(default, help=..., min=..., max=..., choices=...)` is `dataclasses.field` with that
metadata (as TRL declares `field(metadata={"help": ...})`). From it:
- `validate(cfg)` checks every field's type, bounds and choices; configs call it in
  `__post_init__`. A bad value raises `SettingError`, whose message names the field, the value
  and what is allowed ("setting candidates=0: must be at least 1").
- `add_arguments(parser, cls)` generates argparse flags (name, type, default, help with the
  range, choices), nested configs under a prefix (`--judge-max-new-tokens`), or a chosen subset;
  `from_args(cls, namespace)` builds the config back from the parsed flags.
- `describe(cls, name)` and `spec(cls, name)` give a field's help, range text and bounds to
  anything else that shows settings (the studio's forms: studio/forms.py).
- `loading()`: a context in which configs skip validation, for settings read back from the store
  (a run ran with what it ran with, even if the bounds have moved since).

Knows: dataclasses, typing and argparse (all stdlib). Does not know any particular config, the
studio, or what a setting means.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Iterable, Iterator, Sequence

_LOADING = contextvars.ContextVar("settings_loading", default=False)
KEYS = ("help", "label", "min", "max", "above", "below", "allow", "choices", "item", "flag")


class SettingError(ValueError):
    """A setting out of its range or choices; `path` is the field ("judge.max_new_tokens"), `value`
    the bad value, `allowed` what is allowed, in words."""

    def __init__(self, path: str, value: Any, allowed: str, owner: str = ""):
        self.path, self.value, self.allowed, self.owner = path, value, allowed, owner
        super().__init__(f"setting {path}={value!r}: {allowed}")


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, label: str | None = None,
            min: float | None = None, max: float | None = None, above: float | None = None,
            below: float | None = None, allow: Sequence = (), choices: Sequence | None = None,
            item: str | None = None, flag: str | Sequence[str] | None = None) -> Any:
    """A dataclass field with its help, bounds and choices in `metadata`.

    min/max: inclusive bounds; above/below: exclusive ones; allow: values allowed outside the
    bounds (0 = off); choices: the only values (for a tuple field: of each element; `item` names
    one element in messages); label: short name for forms (default: from the field's name);
    flag: the CLI flag(s) when not `--field-name` (the first is the canonical one)."""
    meta = {"help": help, "label": label, "min": min, "max": max, "above": above, "below": below,
            "allow": tuple(allow), "choices": tuple(choices) if choices is not None else None, "item": item,
            "flag": (flag,) if isinstance(flag, str) else (tuple(flag) if flag else None)}
    meta = {k: v for k, v in meta.items() if v is not None and v != ()}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Configs built inside skip validation (stored settings: see the module docstring)."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


# ---- what a field is ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """One field as the generators see it."""

    name: str  # the field's name
    type: Any  # the base type: int, float, str, bool, tuple, or a config dataclass
    optional: bool  # None is allowed
    default: Any  # the default value (a nested config: its default instance)
    help: str
    label: str
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    allow: tuple = ()
    choices: tuple | None = None  # the allowed values (a tuple field: of each element)
    item: str = "value"
    flags: tuple | None = None

    @property
    def nested(self) -> bool:
        return dataclasses.is_dataclass(self.type)


_HINTS: dict = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _base(tp) -> tuple[Any, bool, tuple | None]:
    """(base type, None allowed, Literal choices) of an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        base, _, lit = _base(rest[0]) if len(rest) == 1 else (object, False, None)
        return base, len(rest) < len(args), lit
    if origin is typing.Literal:
        return type(args[0]), False, tuple(args)
    if origin in (tuple, list):
        return tuple, False, None
    return tp, False, None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


_FIELDS: dict = {}


def fields(cls) -> tuple[Spec, ...]:
    """The Spec of every field of a config class (or instance), in order."""
    cls = cls if isinstance(cls, type) else type(cls)
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(_fields(cls))
    return _FIELDS[cls]


def _fields(cls) -> list[Spec]:
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        base, optional, literal = _base(hints[f.name])
        out.append(Spec(name=f.name, type=base, optional=optional, default=_default(f), help=m.get("help", ""),
                        label=m.get("label") or f.name.replace("_", " ").capitalize(), min=m.get("min"),
                        max=m.get("max"), above=m.get("above"), below=m.get("below"), allow=m.get("allow", ()),
                        choices=m.get("choices", literal), item=m.get("item", "value"), flags=m.get("flag")))
    return out


def spec(cls, path: str) -> Spec:
    """The Spec of a field, nested ones by dotted path ("judge.max_new_tokens")."""
    head, _, rest = path.partition(".")
    s = next((s for s in fields(cls) if s.name == head), None)
    if s is None:
        raise KeyError(f"{cls.__name__ if isinstance(cls, type) else type(cls).__name__} has no setting {head!r}")
    return spec(s.type, rest) if rest else s


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def allowed(s: Spec) -> str:
    """What a field allows, in words: "at least 1", "from 0 to 2", "one of chat, none"..."""
    if s.choices is not None:
        text = "one of " + ", ".join(map(str, s.choices))
        return ("each " + text if s.type is tuple else text) + (", or none" if s.optional else "")
    low = f"at least {_num(s.min)}" if s.min is not None else (f"above {_num(s.above)}" if s.above is not None else "")
    high = f"at most {_num(s.max)}" if s.max is not None else (f"below {_num(s.below)}" if s.below is not None else "")
    if s.min is not None and s.max is not None:
        text = f"from {_num(s.min)} to {_num(s.max)}"
    else:
        text = " and ".join(t for t in (low, high) if t)
    text = text or KINDS.get(s.type, "")
    extra = [_num(a) for a in s.allow] + (["none"] if s.optional else [])
    return f"{' or '.join(extra)}, or {text}" if extra and text else (" or ".join(extra) or text)


KINDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false", tuple: "a list"}


def describe(cls, path: str) -> str:
    """A field's help and range, as the CLI's help shows them."""
    s = spec(cls, path)
    return f"{s.help} ({allowed(s)})" if s.help else allowed(s)


# ---- validation --------------------------------------------------------------------------------

def _type_ok(s: Spec, v) -> bool:
    if s.type is bool:
        return isinstance(v, bool)
    if s.type is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if s.type is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if s.type is tuple:
        return isinstance(v, (tuple, list))
    if isinstance(s.type, type):
        return isinstance(v, s.type)
    return True


def check_value(s: Spec, v, path: str = "", owner: str = "") -> None:
    """SettingError unless `v` is a valid value for the field."""
    path = path or s.name
    if v is None and s.optional:
        return
    if v is None or not _type_ok(s, v):
        kind = KINDS.get(s.type, getattr(s.type, "__name__", "another type"))
        rng = allowed(s)
        if s.choices is not None or kind in rng:
            raise SettingError(path, v, f"must be {rng}", owner)
        raise SettingError(path, v, f"must be {kind} ({rng})", owner)
    if s.nested:
        return
    if s.choices is not None:
        if s.type is tuple:
            bad = [x for x in v if x not in s.choices]
            if bad:
                raise SettingError(path, v, f"unknown {s.item} {', '.join(map(repr, bad))}; "
                                            f"known: {', '.join(map(str, s.choices))}", owner)
        elif v not in s.choices:
            raise SettingError(path, v, "must be " + allowed(s), owner)
        return
    if s.type in (int, float) and v not in s.allow:
        if ((s.min is not None and v < s.min) or (s.max is not None and v > s.max)
                or (s.above is not None and v <= s.above) or (s.below is not None and v >= s.below)
                or v != v):  # NaN
            raise SettingError(path, v, "must be " + allowed(s), owner)


def validate(cfg, prefix: str = "") -> None:
    """Check every field of a config instance against its metadata (SettingError naming the
    first bad one). Nested configs validate themselves when built; here only their type is
    checked. Does nothing inside `loading()`."""
    if _LOADING.get():
        return
    for s in fields(cfg):
        check_value(s, getattr(cfg, s.name), prefix + s.name, type(cfg).__name__)


def invalid(path: str, value: Any, allowed_text: str, cfg=None) -> None:
    """Raise the SettingError of a rule the metadata cannot say (a bound that depends on another
    field); does nothing inside `loading()`."""
    if not _LOADING.get():
        raise SettingError(path, value, allowed_text, type(cfg).__name__ if cfg is not None else "")


def checking() -> bool:
    """False inside `loading()`: a config's own cross-field checks may skip then."""
    return not _LOADING.get()


# ---- argparse ----------------------------------------------------------------------------------

TRISTATE = {"auto": None, "on": True, "off": False}  # a `bool | None` field's flag values


def flags_of(s: Spec, prefix: str = "") -> tuple[str, ...]:
    """The CLI flags of a field: its `flag` metadata, else --[prefix-]name (a bool that defaults to
    true: --no-name)."""
    if s.flags:
        return tuple(s.flags)
    name = s.name.replace("_", "-")
    if s.type is bool and not s.optional and s.default is True:
        return (f"--no-{prefix}{name}",)
    return (f"--{prefix}{name}",)


def _metavar(s: Spec) -> str | None:
    return {int: "N", float: "X", str: "TEXT"}.get(s.type)


def _help(s: Spec, default: Any) -> str:
    if s.type is bool and not s.optional:
        return f"{s.help} (on unless this flag is given)" if s.default is True else s.help
    if s.type is bool:  # auto / on / off
        return f"{s.help} (default {'auto' if default is None else ('on' if default else 'off')})"
    rng = allowed(s)
    if s.choices is not None and s.type is not tuple and len(", ".join(map(str, s.choices))) <= LONG:
        rng = ""  # argparse shows them
    if rng == KINDS.get(s.type):
        rng = ""
    if default is not None:
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else _num(default)
        rng = f"{rng}; default {shown or '(none)'}" if rng else f"default {shown or '(none)'}"
    return f"{s.help} ({rng})" if rng else s.help


LONG = 40  # choices longer than this (joined) are listed in the help, not in the usage line


def add_arguments(parser: argparse.ArgumentParser | Any, cls, *, prefix: str = "", only: Iterable[str] | None = None,
                  skip: Iterable[str] = (), defaults: dict | None = None, nested: dict | None = None,
                  _path: str = "") -> dict[str, str]:
    """Add a flag for every field of `cls` (or those in `only`, minus `skip`) to `parser` (a
    parser or an argument group); returns {field path: canonical flag}.

    Each flag's dest is the field's dotted path, which `from_args` reads back. `defaults`
    overrides a field's default on the command line only (None: "unset", resolved by the
    caller). `nested` = {field: {"prefix": "judge-", "only": (...), "skip": (...)}} adds a nested
    config's fields under a flag prefix; a nested field not named there gets no flags."""
    only, skip, defaults, nested = (set(only) if only is not None else None), set(skip), defaults or {}, nested or {}
    out: dict[str, str] = {}
    for s in fields(cls):
        path = _path + s.name
        if s.name in skip or (only is not None and s.name not in only and s.name not in nested):
            continue
        if s.nested:
            if s.name in nested:
                opts = dict(nested[s.name])
                out.update(add_arguments(parser, s.type, prefix=opts.pop("prefix", s.name.replace("_", "-") + "-"),
                                         defaults=opts.pop("defaults", None), _path=path + ".", **opts))
            continue
        default = defaults.get(s.name, s.default)
        names = flags_of(s, prefix)
        kw: dict[str, Any] = dict(dest=path, help=_help(s, default))
        if s.type is bool and s.optional:
            kw.update(choices=tuple(TRISTATE), default={v: k for k, v in TRISTATE.items()}.get(default, default))
        elif s.type is bool:
            kw.update(action="store_false" if s.default is True else "store_true", default=default)
        elif s.type is tuple:
            kw.update(nargs="*", default=default, metavar=s.item.upper())
            if s.choices is not None:
                kw.update(choices=s.choices)
        else:
            kw.update(type=s.type if s.type in (int, float, str) else str, default=default)
            if s.choices is not None:
                kw.update(choices=s.choices)
                if len(", ".join(map(str, s.choices))) > LONG:
                    kw.update(metavar="NAME")
            else:
                kw.update(metavar=_metavar(s))
        parser.add_argument(*names, **kw)
        out[path] = names[0]
    return out


def _convert(s: Spec, v):
    if s.type is bool and s.optional and isinstance(v, str):
        return TRISTATE[v]
    if s.type is tuple and isinstance(v, list):
        return tuple(v)
    return v


def from_args(cls, namespace: argparse.Namespace, base=None, _path: str = ""):
    """The config the parsed flags describe: `base` (default: cls()) with every field that has a
    flag in `namespace` replaced (None where the flag's default was overridden to None keeps
    base's value). Nested configs are rebuilt the same way. Raises SettingError."""
    base = base if base is not None else cls()
    changes = {}
    for s in fields(cls):
        path = _path + s.name
        if s.nested:
            sub = getattr(base, s.name)
            try:
                new = from_args(s.type, namespace, sub, path + ".")
            except SettingError as exc:  # name it as the whole config knows it
                if exc.path.startswith(path + "."):
                    raise
                raise SettingError(f"{path}.{exc.path}", exc.value, exc.allowed, exc.owner) from None
            if new != sub:
                changes[s.name] = new
        elif hasattr(namespace, path):
            v = _convert(s, getattr(namespace, path))
            if v is None and not s.optional:
                continue
            changes[s.name] = v
    return dataclasses.replace(base, **changes) if changes else base


def flag_for(parser_flags: dict, err: SettingError) -> str:
    """The error as a CLI user reads it: the flag instead of the field's name when there is one."""
    flag = parser_flags.get(err.path)
    return f"{flag} {err.value!r}: {err.allowed}" if flag else str(err)
