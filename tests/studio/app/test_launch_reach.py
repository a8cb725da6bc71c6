"""The studio starts on a busy machine: its own address is polled patiently (Gradio's check gave up
on the first answer slower than 3 s, and the studio then failed to start with "a shareable link
must be created"); an address that never answers is one clear error naming the proxy fix."""
from __future__ import annotations

import httpx
import pytest
from ui_helpers import free_port, launched, studio_app

from studio.app import StudioUnreachable, wait_reachable

pytestmark = pytest.mark.ui


def test_a_slow_first_answer_does_not_stop_the_studio(monkeypatch):
    real, calls = httpx.head, []

    def slow_once(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out")  # the first HEAD takes longer than Gradio's 3 s
        return real(url, **kw)

    monkeypatch.setattr(httpx, "head", slow_once)
    with launched(studio_app("scripted:")) as url:
        assert len(calls) >= 2
        assert httpx.get(url, timeout=30).status_code == 200


def test_an_address_that_never_answers_says_so():
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(StudioUnreachable, match="NO_PROXY") as err:
        wait_reachable(url, wait_s=1.0)
    assert url in str(err.value)
