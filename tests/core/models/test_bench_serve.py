"""`palimpsest bench serve` (core/bench_serve.py) and the stand-in it drives (core/serve_standin.py).

No timing is asserted (machines are noisy): the bench's own numbers are checked for what they
must be whatever the speed: every item done, requests counted by the server, the server seeing
as many requests at once as items were in flight, and the JSON line last. The stand-in's answers
are checked against what OpenAILM (core.models.server) needs from vLLM's wire format.
"""
from __future__ import annotations

import json

import pytest

from core.bench_serve import bench_items, run_level, start_standin
from core.models.lm import GenerationConfig, ScoreRequest
from core.models.load import load_lm
from core.serve_standin import parse_chat, render_chat, serve, stats
from studio.cli.main import main


def test_bench_cli_prints_the_curve_and_the_json_line_last(capsys):
    assert main(["bench", "serve", "--json", "--delay", "0.05", "--items", "2", "--levels", "1,4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert len(out) == 1  # --json: only the JSON line on stdout
    curve = result["standin"]["curve"]
    assert [p["concurrency"] for p in curve] == [1, 4] and [p["items"] for p in curve] == [2, 8]
    assert all(p["done"] == p["items"] and p["failed"] == 0 for p in curve)
    assert all(p["requests"] >= 5 * p["items"] for p in curve)  # a REER item: draft, candidates, their scores
    assert curve[1]["server_max_in_flight"] >= 2
    assert all(p["driver_cpu_s_per_request"] > 0 for p in curve)
    assert result["standin"]["speedup_16_vs_1"] is None and result["url"] is None  # 16 was not measured


def test_bench_against_a_given_url(capsys):
    with serve(brain="scripted", keep_bodies=False) as s:
        assert main(["bench", "serve", "--json", "--delay", "0", "--items", "1", "--levels", "2",
                     "--url", s.spec]) == 0
        served = s.state.stats()["total"]
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["url"]["spec"] == s.spec
    point = result["url"]["curve"][0]
    assert point["done"] == point["items"] == 4 and served >= 5 * 4  # the real-server leg really went there


@pytest.mark.parametrize("argv, why", [(["--levels", "1,x"], "--levels '1,x'"), (["--items", "0"], "--items must"),
                                       (["--delay", "-1"], "--delay 0 or more")])
def test_bench_refuses_bad_flags(argv, why, capsys):
    assert main(["bench", "serve", *argv]) == 2
    assert why in capsys.readouterr().err


def test_one_level_counts_what_the_server_saw():
    proc, spec = start_standin(0.0)
    try:
        lm = load_lm(spec)
        point = run_level(lm, spec, 3, 6, counter=lambda: stats(spec))
    finally:
        proc.kill()
        proc.wait()
    assert point["done"] == 6 and point["server_max_in_flight"] >= 1 and point["requests"] >= 30


# ---- the stand-in speaks what OpenAILM needs ----------------------------------------------------


def test_standin_scripted_brain_answers_openai_lm():
    with serve(brain="scripted", max_model_len=512) as s:
        lm = load_lm(s.spec)
        assert lm.max_length == 512
        judged = lm.generate([{"role": "user", "content": "Grade it. End with this line:\nOverall: <score>"}],
                             GenerationConfig(n=2, seed=1))
        assert len(judged) == 2 and all("Overall: 7" in g for g in judged)
        cont = lm.generate([{"role": "user", "content": "Rewrite inside <rewrite></rewrite>."}],
                           GenerationConfig(max_new_tokens=40), prefix="<rewrite>The keeper")
        path, body = s.state.bodies[-1]
        assert path == "/v1/chat/completions" and body["continue_final_message"] is True and cont[0]
        scored = lm.loglikelihood([ScoreRequest(("The keeper read the letter.",), " The keeper wept.")])[0]
        assert "".join(scored.tokens) == " The keeper wept." and all(lp < 0 for lp in scored.logprobs)
        assert lm.count_tokens("The keeper read the letter.") == 6  # scripted tokens: 5 words and a full stop
        assert lm.chat_text([{"role": "user", "content": "hi"}]) == render_chat([{"role": "user", "content": "hi"}],
                                                                                True)


def test_standin_prompt_logprobs_and_raw_completions():
    import urllib.request

    with serve(brain="scripted") as s:
        def post(path, body):
            req = urllib.request.Request(f"{s.url}{path}", json.dumps({"model": s.state.model, **body}).encode(),
                                         {"Content-Type": "application/json"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(req, timeout=10) as resp:
                return json.loads(resp.read())

        echo = post("/completions", {"prompt": "The keeper read it twice.", "max_tokens": 1, "echo": True,
                                     "logprobs": 0})["choices"][0]["logprobs"]["token_logprobs"]
        plp = post("/completions", {"prompt": "The keeper read it twice.", "max_tokens": 1,
                                    "prompt_logprobs": 0})["choices"][0]["prompt_logprobs"]
        assert plp[0] is None and [next(iter(d.values()))["logprob"] for d in plp[1:]] == echo[1:len(plp)]
        prompt = render_chat([{"role": "user", "content": "Write a line."}], True) + "The sea"
        reply = post("/completions", {"prompt": prompt, "max_tokens": 30})["choices"][0]
        assert reply["text"] and reply["finish_reason"] in ("stop", "length")


def test_parse_chat_round_trips_chatml():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Two\nlines"}]
    assert parse_chat(render_chat(msgs, False)) == (msgs, "")
    assert parse_chat(render_chat(msgs, True) + "Once upon") == (msgs, "Once upon")
    assert parse_chat("no template here") == ([{"role": "user", "content": "no template here"}], "")


def test_bench_items_are_distinct():
    its = bench_items(20, tag="x")
    assert len({(i.query, i.reference) for i in its}) == 20
