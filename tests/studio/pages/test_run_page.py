"""The REER and R2 pages stand on one run-page scaffold (studio.pages.run_page.RunPage): the parts both
have (the settings' check, Pause, Stop, accept / reject, the menus' picks, the tick's redraw) are the
scaffold's own handlers, wired with one shape on both pages, and both refuse alike.

Handler-level: the studio is built on the scripted model (no model load, no launch) and its
handlers are looked up by api name, as tests/studio/pages/test_ux_reerview.py does."""
from __future__ import annotations

import warnings

import pytest

from studio.pages.run_page import RunPage

SHARED = {"check": RunPage.check_settings, "pause": RunPage.pause, "stop": RunPage.stop}


@pytest.fixture(scope="module")
def app():
    from studio.app import build_app

    return build_app("scripted:")


def _fn(app, name: str):
    return next(f for f in app.fns.values() if f.api_name == name)


def _ids(blocks) -> list[str]:
    return [getattr(b, "elem_id", None) or type(b).__name__ for b in blocks]


@pytest.mark.parametrize("kind", ["reer", "r2"])
def test_the_shared_commands_are_the_scaffolds_handlers(app, kind):
    for name, method in SHARED.items():
        fn = _fn(app, f"{kind}_{name}").fn
        assert getattr(fn, "__func__", None) is method, f"{kind}_{name} is the page's own copy: {fn!r}"
        assert isinstance(fn.__self__, RunPage) and fn.__self__.kind == kind
    for name in ("accept", "reject"):  # by_person keeps the wrapped handler's name: the scaffold's reviewer
        assert _fn(app, f"{kind}_{name}").fn.__wrapped__.__qualname__.startswith("RunPage.reviewer")


def test_the_shared_endpoints_have_one_shape_on_both_pages(app):
    for name in ("pause", "accept", "reject"):
        reer, r2 = _fn(app, f"reer_{name}"), _fn(app, f"r2_{name}")
        assert [i.replace("reer-", "r2-") for i in _ids(reer.inputs)] == _ids(r2.inputs)
        assert [i.replace("reer-", "r2-") for i in _ids(reer.outputs)] == _ids(r2.outputs)
    # R2's Stop also hides the judgment and reflection forms: the scaffold's outputs come first
    reer_stop, r2_stop = _ids(_fn(app, "reer_stop").outputs), _ids(_fn(app, "r2_stop").outputs)
    assert [i.replace("reer-", "r2-") for i in reer_stop] == r2_stop[:len(reer_stop)]
    assert "r2-judge-form" in r2_stop[len(reer_stop):]


@pytest.mark.parametrize("kind", ["reer", "r2"])
def test_pause_stop_and_accept_with_no_run_refuse_in_words(app, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request is a Python warning
        for name, words in (("pause", "Nothing to pause"), ("stop", "Nothing to stop"), ("accept", "No run on screen")):
            out = _fn(app, f"{kind}_{name}").fn(None)
            status = next(v for k, v in out.items() if getattr(k, "elem_id", None) == f"{kind}-status")
            assert words in status and 'role="alert"' in status
