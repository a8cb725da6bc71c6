"""Who is acting: the annotator recorded with every human judgment, override, review decision, edit,
rating and note.

Knows: the current annotator as a context value (`acting_as(name)` sets it for the code inside, in
this thread or task only; `current()` reads it, None when nobody set it), the default name of a
person at a shell (`os_user()`: getpass.getuser(), "unknown" when the OS cannot say), how a name is
checked (`clean`: 1 to 80 printable characters, no line breaks; "model:" starts only a model judge's
name, e.g. "model:scripted:judge=7"; "unknown" is kept for rows without one) and how a missing one
reads (`label(None)` is "unknown": rows saved before annotators were recorded).

Names that look alike are one person: `clean` returns the name in Unicode NFC (`e\u0301ve` and
`\u00e9ve` are one name) and refuses a name whose letters come from more than one script (Latin
with Cyrillic look-alikes: "аda" with a Cyrillic "а"; Han, Hiragana and Katakana count as one
script), a name in Cyrillic or Greek made only of letters that look Latin ("асе" reads "ace"), and
compatibility forms (full-width or styled letters, which NFKC would fold into plain ones).

Does not know: logins or the studio's users (the studio sets `acting_as(request.username)` around
a handler), nor where acts are stored (core.data.curation, core.judging.queue).
"""
from __future__ import annotations

import contextlib
import contextvars
import getpass
import unicodedata
from typing import Iterator

UNKNOWN = "unknown"  # how a row without an annotator reads (saved before annotators were recorded)
MODEL_PREFIX = "model:"  # a model judge's name starts so: "model:<spec>"
MAX_CHARS = 80  # longest annotator name

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("palimpsest_annotator", default=None)


class BadAnnotator(ValueError):
    """An annotator name that cannot be recorded; the message says what a name may be."""


_ONE_SCRIPT = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "CJK": "CJK", "IDEOGRAPHIC": "CJK"}  # Japanese mixes them
# Cyrillic and Greek letters drawn like Latin ones (after Unicode's confusables.txt), with the Latin they mimic
_LOOKS_LATIN = dict(zip("аеорсухіјѕԁһӏАВЕКМНОРСТУХІЈЅαοτυνικρΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
                        "aeopcyxijsdhlABEKMHOPCTYXIJSaotuvikpABEZHIKMNOPTYX"))


def _script(ch: str) -> str:
    """The script of a letter by its Unicode name's first word (LATIN, CYRILLIC, GREEK, ...)."""
    first = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
    return _ONE_SCRIPT.get(first, first)


def _look_alike(name: str, where: str) -> None:
    """BadAnnotator when `name` could pass for another (module docstring)."""
    if unicodedata.normalize("NFKC", name) != name:
        raise BadAnnotator(f"{where}: {name[:40]!r} uses compatibility characters (full-width or styled letters); "
                           "write it in plain letters")
    letters = [c for c in name if c.isalpha()]
    scripts = sorted({_script(c) for c in letters})
    if len(scripts) > 1:
        raise BadAnnotator(f"{where}: {name[:40]!r} mixes scripts ({', '.join(s.title() for s in scripts)}): a name "
                           "is written in one script, so that two names that look alike are one person")
    if scripts and scripts[0] != "LATIN" and all(c in _LOOKS_LATIN for c in letters):
        latin = "".join(_LOOKS_LATIN.get(c, c) for c in name)
        raise BadAnnotator(f"{where}: {name[:40]!r} is written in {scripts[0].title()} letters that look like the "
                           f"Latin name {latin!r}; write it in Latin letters")


def clean(name: str, allow_model: bool = False, where: str = "annotator") -> str:
    """The name, stripped and in NFC; BadAnnotator naming `where` when it is empty, too long, has line
    breaks or control characters, is "unknown", could pass for another name (module docstring), or
    (unless allow_model) starts with "model:"."""
    if not isinstance(name, str) or not name.strip():
        raise BadAnnotator(f"{where}: give a name (1 to {MAX_CHARS} characters), e.g. --annotator alice")
    name = unicodedata.normalize("NFC", name.strip())
    if len(name) > MAX_CHARS or any(not c.isprintable() for c in name):
        raise BadAnnotator(f"{where}: {name[:40]!r} is not a name; use 1 to {MAX_CHARS} printable characters "
                           "on one line")
    if not allow_model and name.lower().startswith(MODEL_PREFIX):
        raise BadAnnotator(f"{where}: {name[:40]!r}: names starting with {MODEL_PREFIX!r} are kept for model "
                           "judges; pick a person's name")
    if name.casefold() == UNKNOWN:
        raise BadAnnotator(f"{where}: {name[:40]!r}: {UNKNOWN!r} is kept for rows saved without an annotator; pick "
                           "a person's name")
    if not allow_model:  # a model judge's name is its spec (paths, URLs): not a person's to mistake
        _look_alike(name, where)
    return name


def is_model(name: str | None) -> bool:
    """True for a model judge's name ("model:<spec>")."""
    return isinstance(name, str) and name.lower().startswith(MODEL_PREFIX)


def model_name(spec: str) -> str:
    """The annotator name of a model judge: "model:<spec>". A spec too long for a name (a deep local
    folder, a script's path) keeps its end, after "…", and a hash of the whole spec before it, so two
    long specs never share a name and the same spec always gets the same one."""
    import hashlib

    spec = str(spec).strip()
    name = MODEL_PREFIX + spec
    if len(name) > MAX_CHARS and spec and all(c.isprintable() for c in spec):
        digest = hashlib.sha1(spec.encode("utf-8")).hexdigest()[:8]
        keep = MAX_CHARS - len(MODEL_PREFIX) - len(digest) - 2
        name = f"{MODEL_PREFIX}{digest}…{spec[-keep:]}"
    return clean(name, allow_model=True, where="model judge")


def os_user() -> str:
    """The OS user running this process (the CLI's default --annotator); "unknown" when none is known."""
    try:
        return clean(getpass.getuser())
    except (OSError, KeyError, ImportError, BadAnnotator):
        return UNKNOWN


def current() -> str | None:
    """The annotator set by the innermost `acting_as`, or None."""
    return _current.get()


def resolve(name: str | None) -> str | None:
    """An explicit name (checked) wins; else the current one; else None (stored as NULL, read "unknown")."""
    return clean(name) if name is not None else current()


@contextlib.contextmanager
def acting_as(name: str | None) -> Iterator[str | None]:
    """Record `name` (checked; None leaves nobody set) as the annotator of every act inside."""
    token = _current.set(clean(name) if name is not None else None)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def label(name: str | None) -> str:
    """How an annotator reads in listings: the name, or "unknown" for rows saved without one."""
    return name if isinstance(name, str) and name.strip() else UNKNOWN
