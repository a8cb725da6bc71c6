"""The scoring playground, launched for real and driven two ways: through gradio_client (the API
a script would use) and through a headless Chromium at 1280x800 (what a person sees; the
screenshot lands in tests/artifacts/playground.png). The page's own behaviour (escaping, the
template and skip options, errors, the browser) is checked on the scripted model; two tests
check the real built-in model end to end (a real sample, a scrambled reference)."""
from __future__ import annotations

import math
import os
import re
import time

import pytest
from ui_helpers import (
    ARTIFACTS,
    browser_page,
    client,
    launched,
    needs_chromium,
    studio_app,
)

pytestmark = [pytest.mark.ui]


def _ppl(stats: str) -> float:
    m = re.search(r'data-ppl="([^"]+)"', stats)
    assert m, f"no perplexity in stats: {stats[:300]}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def samples():
    from studio.app import load_samples

    got = load_samples()
    if not got:  # data/samples.jsonl absent: one sample written here keeps the tests meaningful
        got = [{
            "id": "inline-01", "category": "letter_writing",
            "query": "Write a short note thanking a neighbour for watering your plants.",
            "thinking": "I want it warm but brief. Mention the plants by name, then offer a favour back.",
            "reference": "Dear Ms. Alvarez,\n\nThank you so much for watering my tomatoes and the old fern "
                         "while I was away. Everything looks healthier than when I left. Please let me "
                         "return the favour next time you travel.\n\nWarmly,\nSam",
        }]
    return got


@pytest.fixture(scope="module")
def url(samples):
    """The studio on the scripted model: the page's behaviour, no model to load."""
    with launched(studio_app("scripted:", samples=samples)) as u:
        yield u


@pytest.fixture(scope="module")
def api(url):
    return client(url)


@pytest.fixture(scope="module")
def real_api(builtin_lm, samples):
    """The studio on the real built-in model."""
    with launched(studio_app(builtin_lm, samples=samples, name="smollm2-135m")) as u:
        yield client(u)


def _score(api, q, z, y, template="chat", skip=False, compare=True):
    return api.predict(q, z, y, template, skip, compare, api_name="/score")


def _shown(stats: str, key: str) -> str:
    """The text of the stats tile `key` as the page shows it."""
    m = re.search(rf'data-key="{key}"[^>]*><div class="v">([^<]*)</div>', stats)
    assert m, f"no {key} tile in stats: {stats[:300]}"
    return m.group(1)


def _same_as_core(stats: str, lm, q, z, y, template="chat") -> None:
    """The page's perplexity, clipped score and mean log-prob equal core's for the same input, to
    the digits shown (2 decimals with thousands commas under 1,000; 3 decimals)."""
    from core.models.scoring import ScoringConfig, score

    want = score(lm, q, z, y, ScoringConfig(template=template))
    assert want.ppl < 1000  # the format below is the page's for this range
    assert _shown(stats, "ppl") == f"{want.ppl:,.2f}"
    assert _shown(stats, "score") == f"{want.score:.3f}"
    assert _shown(stats, "mean") == f"{want.mean_logprob:.3f}"
    assert _shown(stats, "tokens") == f"{want.n_tokens:,}"


# ---- rendering, no server ----------------------------------------------------------------------

def test_heatmap_escapes_and_keeps_whitespace():
    from studio.views.heatmap import heatmap_html

    toks = ["<b>", " &", "\n\n", "  x"]
    out = heatmap_html(toks, [-0.1, -1.0, -3.0, float("-inf")])
    assert out.count('class="tok"') == 4
    assert "<b>" not in out and "&lt;b&gt;" in out and " &amp;" in out
    assert '↵</span>\n\n' in out and "  x" in out
    assert 'title="&quot;\\n\\n&quot;' in out  # the tooltip shows the newline token as "\n\n"
    assert "#ffffff" not in out.split('class="tok"')[3]  # -3 is clipped to the deepest red


def test_heatmap_colour_scale_ends():
    from studio.views.heatmap import colour, depth

    assert colour(depth(0.0)) == "#ffffff"
    assert colour(depth(-2.0)) == colour(depth(-9.0)) == "#a50f15"
    assert depth(-1.0) == 0.5


def test_split_characters_are_shown_whole():
    from studio.views.heatmap import display_texts

    toks = ["He", " said", " \ufffd", "\ufffd", "\ufffd", "本", " ok"]
    assert display_texts(toks, "He said 日本 ok") == ["He", " said", " 日", "", "", "本", " ok"]
    assert display_texts(toks, "something else") == toks  # no alignment: raw tokens


# ---- the launched app, through its API -----------------------------------------------------------


@pytest.mark.model
def test_score_real_sample(real_api, samples, builtin_lm):
    s = samples[0]
    t0 = time.perf_counter()
    stats, heat = _score(real_api, s["query"], s["thinking"], s["reference"])
    print(f"score + compare over the API: {time.perf_counter() - t0:.2f} s")
    ppl = _ppl(stats)
    assert math.isfinite(ppl) and ppl > 1
    _same_as_core(stats, builtin_lm, s["query"], s["thinking"], s["reference"])
    n = int(re.search(r'data-tokens="(\d+)"', stats).group(1))
    assert n > 50
    assert heat.count('class="tok"') == n
    assert "Compare." in stats  # the compare checkbox is on by default


@pytest.mark.model
def test_scrambled_reference_is_much_less_expected(real_api, samples):
    s = samples[0]
    real, _ = _score(real_api, s["query"], s["thinking"], s["reference"], compare=False)
    scrambled = " ".join(reversed(s["reference"].split()))
    bad, _ = _score(real_api, s["query"], s["thinking"], scrambled, compare=False)
    assert _ppl(bad) > 5 * _ppl(real)


def test_empty_reference_is_a_readable_error(api):
    stats, heat = _score(api, "Write a haiku.", "", "   \n ")
    assert "score-error" in stats and "reference is empty" in stats
    assert "Traceback" not in stats and 'class="tok"' not in heat


def test_markup_in_reference_is_escaped(api):
    stats, heat = _score(api, "Show some HTML.", "", "Here it is: <script>alert(1)</script> & done.")
    assert "<script>" not in heat
    assert "&lt;" in heat and "&amp;" in heat
    assert _ppl(stats) > 1


def test_skip_first_segment_and_template_none(api, samples):
    s = samples[0]
    full, _ = _score(api, s["query"], s["thinking"], s["reference"], compare=False)
    part, heat = _score(api, s["query"], s["thinking"], s["reference"], template="none", skip=True, compare=False)
    n_full = int(re.search(r'data-tokens="(\d+)"', full).group(1))
    n_part = int(re.search(r'data-tokens="(\d+)"', part).group(1))
    assert n_part < n_full
    assert 'class="unscored"' in heat


def test_api_defaults_template_skip_and_compare(api, samples):
    s = samples[0]
    stats, _ = api.predict(s["query"], s["thinking"], s["reference"], api_name="/score")
    assert _ppl(stats) > 1 and "Compare." in stats


def test_the_shown_numbers_equal_cores_for_the_same_input(api, samples):
    from core.models.load import load_lm

    s = samples[0]
    for template in ("chat", "none"):
        stats, _ = _score(api, s["query"], s["thinking"], s["reference"], template=template, compare=False)
        _same_as_core(stats, load_lm("scripted:"), s["query"], s["thinking"], s["reference"], template)


@needs_chromium
def test_browser_pick_sample_and_score(url, samples):
    with browser_page(url) as page:
        page.get_by_role("tab", name="Score").click(timeout=30_000)  # the playground is the studio's Score tab
        page.wait_for_selector("#score-run", timeout=30_000)
        page.click("#score-sample input")
        page.locator("ul[role='listbox'] li").first.click()
        sample_ref = samples[0]["reference"][:20]
        page.wait_for_function(
            "s => (document.querySelector('#score-reference textarea') || {}).value?.startsWith(s)",
            arg=sample_ref, timeout=15_000,
        )
        page.click("#score-run")
        page.wait_for_selector("#score-heatmap span.tok", timeout=60_000)
        page.wait_for_selector("#score-stats [data-ppl]", timeout=30_000)
        stats_text = page.inner_text("#score-stats")
        assert "perplexity" in stats_text.lower()
        assert re.search(r"\d+\.\d+", stats_text)
        n = page.locator("#score-heatmap span.tok").count()
        assert n == int(page.get_attribute("#score-stats [data-tokens]", "data-tokens"))
        time.sleep(0.3)  # let the progress overlay fade before the picture
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, "playground.png"))
