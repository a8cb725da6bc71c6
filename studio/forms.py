"""Form widgets built from a config's settings (core.settings), so a page's labels, help, bounds
and choices are the config's own, and the config validates what a person typed.

`widget(cls, "candidates", elem_id=...)` makes the gradio component of one field (Checkbox for a
flag, Radio for choices, Slider with the field's bounds or Number for numbers, Textbox for text),
its label from the field's label (with the real default in brackets) and its info from the
field's help. `config(cls, {path: value})` builds the config from the widgets' values (numbers
made whole where the field is), raising core.settings.SettingError; `error_text(exc, cls)` is
that error as the page shows it, naming the field by its label and by its setting name;
`problem(cls, values)` is that text or "" (a page's inline check under its settings, redrawn as
the person types, so a setting that cannot work is refused before Run).

The config is the one checker: a Number gets no gradio bounds from the field (gradio would refuse
an out-of-range value before the page's handler with "Value 0 is less than minimum value 1",
naming no field); a page may still pass `minimum`/`maximum` of its own.

Knows: gradio components and the settings metadata. Does not know any page or any config.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from core.settings import SettingError, Spec, allowed, spec

MISSING = object()


def default_of(cls, path: str) -> Any:
    """The field's value in a default config (nested paths: "judge.max_new_tokens")."""
    value = cls()
    for part in path.split("."):
        value = getattr(value, part)
    return value


def label_of(cls, path: str, show_default: bool = True) -> str:
    s = spec(cls, path)
    d = default_of(cls, path)
    return f"{s.label} [{d:g}]" if show_default and isinstance(d, float) else (
        f"{s.label} [{d}]" if show_default else s.label)


def _bounds(s: Spec) -> tuple[float | None, float | None]:
    low = s.min if s.min is not None else s.above
    high = s.max if s.max is not None else s.below
    if s.allow and low is not None:
        low = min([low, *s.allow])
    return low, high


def widget(cls, path: str, *, value: Any = MISSING, elem_id: str | None = None, label: str | None = None,
           show_default: bool = True, slider: bool = False, choices: list | None = None, info: str | None = None,
           **kw) -> gr.components.Component:
    """The component for one field (module docstring). `choices` may give (label, value) pairs for
    a field's choices (their values must be the config's); other keyword arguments go to gradio
    (scale, min_width, and a `minimum`/`maximum` a page narrows for its own reasons)."""
    s = spec(cls, path)
    value = default_of(cls, path) if value is MISSING else value
    common = dict(label=label or label_of(cls, path, show_default), elem_id=elem_id,
                  info=s.help if info is None else (info or None))
    if s.type is bool:
        return gr.Checkbox(value=value, **common, **kw)
    if s.choices is not None:
        picks = choices if choices is not None else list(s.choices)
        values = [c[1] if isinstance(c, tuple) else c for c in picks]
        if not set(values) <= set(s.choices):
            raise ValueError(f"{path}: choices {values} are not all among the config's {list(s.choices)}")
        return gr.Radio(picks, value=value, **common, **kw)
    if s.type in (int, float):
        if slider:  # a slider needs its ends; it cannot be dragged past them
            low, high = _bounds(s)
            kw.setdefault("minimum", low)
            kw.setdefault("maximum", high)
            return gr.Slider(value=value, step=1 if s.type is int else kw.pop("step", 0.01), **common, **kw)
        if s.type is int:
            kw.setdefault("precision", 0)
        return gr.Number(value=value, **common, **kw)
    return gr.Textbox(value=value, max_lines=1, **common, **kw)


def _typed(s: Spec, v: Any) -> Any:
    """A widget's value as the field wants it: whole numbers where the field is int."""
    if s.type is int and isinstance(v, float) and v.is_integer():
        return int(v)
    if s.type is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def config(cls, values: dict[str, Any], base=None):
    """`base` (default: cls()) with the given fields replaced; nested ones by dotted path. Raises
    SettingError (nested ones with their full path) when the config refuses a value."""
    base = base if base is not None else cls()
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, v in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = v
        else:
            top[head] = _typed(spec(cls, head), v)
    for head, vals in nested.items():
        try:
            top[head] = config(spec(cls, head).type, vals, getattr(base, head))
        except SettingError as exc:
            raise SettingError(f"{head}.{exc.path}", exc.value, exc.allowed, exc.owner) from None
    return dataclasses.replace(base, **top)


def error_text(exc: SettingError, cls) -> str:
    """The config's refusal as a page shows it: "Seed: empty — must be a whole number (...) (setting seed)"."""
    try:
        label = spec(cls, exc.path).label
    except KeyError:
        label = exc.path
    shown = "empty" if exc.value is None else repr(exc.value)
    return f"{label}: {shown} — {exc.allowed} (setting {exc.path})"


def problem(cls, values: dict[str, Any], base=None) -> str:
    """Why the config refuses these widget values, as `error_text` says it ("" when it takes them)."""
    try:
        config(cls, values, base)
    except SettingError as exc:
        return error_text(exc, cls)
    return ""


def range_text(cls, path: str) -> str:
    """What a field allows, in words (for a hint next to a widget)."""
    return allowed(spec(cls, path))
