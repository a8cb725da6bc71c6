"""Who is using the studio: the annotator name a page handler records its human acts under.

Knows: how a Gradio request names its person (`annotator_of(request)`: the logged-in user when the
studio was started with a login, else the OS user running the studio, the same default as the
CLI's --annotator), and how a handler is run as that person (`as_person(request)`: a context
manager around `core.annotators.acting_as`).

Does not know: logins or passwords (the launcher's auth), nor where acts are stored.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from core.annotators import BadAnnotator, acting_as, clean, os_user


def annotator_of(request) -> str:
    """The person behind a Gradio request: its logged-in username (checked), else the OS user.
    `request` may be None (a handler called outside a request, e.g. in a unit test)."""
    name = getattr(request, "username", None) if request is not None else None
    if name:
        try:
            return clean(str(name), where="login name")
        except BadAnnotator:
            pass  # a login name we cannot record falls back to the OS user, never to nobody
    return os_user()


@contextlib.contextmanager
def as_person(request) -> Iterator[str]:
    """Run the code inside as the request's person: every act it records carries that name."""
    name = annotator_of(request)
    with acting_as(name):
        yield name
