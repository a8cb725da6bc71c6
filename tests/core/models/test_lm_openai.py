"""Tests for core.models.server against a PROTOCOL DOUBLE of a vLLM server: the stand-in
(core.serve_standin, its "words" brain, no delay), started once for the module.

It is not a model: it speaks vLLM's wire format (/v1/models, /v1/chat/completions,
/v1/completions with echo + logprobs, /tokenize, /detokenize; llama-cpp-python's in mode "llama")
with deterministic fake answers, so the client's parsing, request bodies, error handling and
boundary arithmetic can be checked fast and without a GPU. Its "tokenizer" splits text into words
that carry their leading whitespace; a word's log-prob is derived from its characters
(`fake_logprob`, number words near-certain). Like vLLM, `text_offset` is the running sum of
token-string lengths, so a BOS token with text (mode "bos") shifts every offset.
"""
from __future__ import annotations

import re
import socket

import pytest

from core.models.dialect import MisalignedServer
from core.models.echo import pick_continuation
from core.models.lm import ContextTooLong, GenerationConfig, LMError, ModelNotFound, ScoreRequest, cut_at_stop
from core.models.load import load_lm
from core.models.server import VLLM_COMMAND, BadServerReply, OpenAILM
from core.models.server_spec import parse_spec
from core.serve_standin import State, fake_logprob, fake_tokens, render_chat, start

MODEL = "fake/Model-1B"
OTHER = "fake/Other"
MAX_MODEL_LEN = 64  # in fake tokens (words)


@pytest.fixture(scope="module")
def server():
    standin = start(State(model=MODEL, extra_models=(OTHER,), max_model_len=MAX_MODEL_LEN))
    yield standin
    standin.close()


@pytest.fixture
def double(server, monkeypatch):
    """(base URL, state) with a clean state and no API key in the environment."""
    state = server.state
    state.reset()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PALIMPSEST_API_KEY", raising=False)
    monkeypatch.delenv("PALIMPSEST_SERVER_TIMEOUT", raising=False)
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "0")  # tests of retries set their own
    return server.url, state


@pytest.fixture
def lm(double) -> OpenAILM:
    base, state = double
    lm = OpenAILM.from_spec(f"{base}#{MODEL}")
    state.bodies.clear()  # the probes at load are tested on their own
    return lm


# ---- spec -------------------------------------------------------------------------------------


def test_parse_spec_forms():
    s = parse_spec("http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct")
    assert (s.base, s.root, s.model) == ("http://localhost:8000/v1", "http://localhost:8000", "Qwen/Qwen2.5-7B-Instruct")
    s = parse_spec("openai:https://gpu.example:443/v1/")
    assert (s.base, s.root, s.model) == ("https://gpu.example:443/v1", "https://gpu.example:443", None)
    assert parse_spec("http://h:1").base == "http://h:1/v1"
    with pytest.raises(ModelNotFound):
        parse_spec("openai:gpt-4o")


def test_load_lm_without_model_takes_first_listed(double):
    base, _ = double
    lm = load_lm(base)
    assert isinstance(lm, OpenAILM)
    assert lm.model == MODEL and lm.name == base
    assert lm.max_length == MAX_MODEL_LEN  # from max_model_len


def test_named_model_and_default_length(double):
    base, _ = double
    lm = load_lm(f"openai:{base}#{OTHER}")
    assert lm.model == OTHER and lm.name == f"openai:{base}#{OTHER}"
    assert lm.max_length == 4096  # /models entry without max_model_len


def test_unknown_model_names_what_is_offered(double):
    base, _ = double
    with pytest.raises(ModelNotFound, match=re.escape(MODEL)):
        load_lm(f"{base}#nope/nope")


def test_model_named_when_server_has_no_models_endpoint(double):
    base, state = double
    state.mode.add("no_models")
    lm = load_lm(f"{base}#{MODEL}")
    assert lm.model == MODEL and lm.max_length == 4096
    with pytest.raises(ModelNotFound, match="#model-name"):
        load_lm(base)


def test_api_key_sent_as_bearer(double, monkeypatch):
    base, state = double
    monkeypatch.setenv("PALIMPSEST_API_KEY", "sekrit")
    load_lm(base)
    assert state.headers[-1].get("Authorization") == "Bearer sekrit"


# ---- generate ---------------------------------------------------------------------------------


def test_generate_returns_n_in_order_and_sends_settings(lm, double):
    _, state = double
    cfg = GenerationConfig(max_new_tokens=33, temperature=0.7, top_p=0.9, n=3, stop=("STOP",), seed=11)
    out = lm.generate([{"role": "user", "content": "hi"}], cfg)
    assert out == [f"reply {i} seed=11\n" for i in range(3)]  # index order, cut at the stop string
    assert [o.finish_reason for o in out] == ["stop"] * 3  # cut here at a stop string: "stop", whatever the server said
    path, body = state.bodies[-1]
    assert path == "/v1/chat/completions"
    assert body == {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 33,
                    "temperature": 0.7, "top_p": 0.9, "n": 3, "stop": ["STOP"], "seed": 11}


def test_generate_without_seed_omits_it(lm, double):
    _, state = double
    lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(n=1, extra={"top_k": 5}))
    body = state.bodies[-1][1]
    assert "seed" not in body and body["top_k"] == 5


def test_generate_passes_the_servers_finish_reason(lm):
    out = lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(n=2))
    assert [o.finish_reason for o in out] == ["length", "length"] and out[0].startswith("reply 0")


# ---- count_tokens -----------------------------------------------------------------------------


def test_count_tokens_asks_the_servers_tokenizer(lm, double):
    _, state = double
    assert lm.count_tokens("the keeper read  the letter\n") == len(fake_tokens("the keeper read  the letter\n")) == 6
    assert state.bodies[-1] == ("/tokenize", {"model": MODEL, "prompt": "the keeper read  the letter\n",
                                              "add_special_tokens": False})
    assert lm.count_tokens("") == 0


def test_count_tokens_without_tokenize_needs_a_local_tokenizer(double):
    from transformers import AutoTokenizer

    from core.models.hf import builtin_model_dir

    base, state = double
    state.mode.add("no_tokenize")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}")
    with pytest.raises(LMError, match="cannot count tokens.*no tokenize endpoint.*#tokenizer="):
        lm.count_tokens("some words")  # never a word count
    local = OpenAILM.from_spec(f"{base}#{MODEL}", tokenizer=str(builtin_model_dir()))
    text = "The keeper read the letter twice."
    expect = len(AutoTokenizer.from_pretrained(builtin_model_dir())(text, add_special_tokens=False)["input_ids"])
    assert local.count_tokens(text) == expect


def test_cut_at_stop_earliest():
    assert cut_at_stop("a END b STOP", ("STOP", "END")) == "a "
    assert cut_at_stop("abc", ()) == "abc"


# ---- loglikelihood ----------------------------------------------------------------------------


def test_loglikelihood_boundaries_and_order(lm, double):
    _, state = double
    reqs = [
        ScoreRequest(("Hello",), " world again"),  # clean boundary
        ScoreRequest(("Hello ",), "world"),  # the space stays in the context; " world" straddles
        ScoreRequest(("The cat", " sat"), "ting quietly"),  # " satting" straddles
        ScoreRequest(("One two three four",), " five"),
    ]
    out = lm.loglikelihood(reqs)
    assert [r.tokens for r in out] == [[" world", " again"], [" world"], [" satting", " quietly"], [" five"]]
    assert [r.context_tokens for r in out] == [1, 1, 2, 4]
    for r in out:
        assert r.logprobs == [fake_logprob(t) for t in r.tokens]
        assert r.truncated == 0
    sent = [b for p, b in state.bodies if p == "/v1/completions"]
    assert sorted(b["prompt"] for b in sent) == sorted("".join(r.context) + r.continuation for r in reqs)
    assert all(b["echo"] is True and b["max_tokens"] == 1 and b["logprobs"] == 0 and b["temperature"] == 0 for b in sent)


def test_loglikelihood_many_requests_keep_order(lm):
    reqs = [ScoreRequest((f"w{i} x{i}",), f" y{i} z{i}") for i in range(20)]
    out = lm.loglikelihood(reqs, precision="bf16")  # precision is ignored by servers
    assert [r.tokens for r in out] == [[f" y{i}", f" z{i}"] for i in range(20)]


def test_loglikelihood_with_bos_text_keeps_boundary(lm, double):
    _, state = double
    state.mode.add("bos")  # vLLM-like: "<s>" listed first, offsets counted from its text
    out = lm.loglikelihood([ScoreRequest(("Hello ",), "world"), ScoreRequest(("a b",), " c.")])
    assert [r.tokens for r in out] == [[" world"], [" c."]]
    assert [r.context_tokens for r in out] == [2, 3]  # the BOS token is context
    # first context word now has a log-prob, but only the continuation is returned
    assert out[0].logprobs == [fake_logprob(" world")]


def test_pick_continuation_right_aligns_and_checks_the_counts():
    toks, lps = ["Hi", " there"], [None, -1.0]
    assert pick_continuation(toks, lps, context_len=3, text_len=8, listed=2) == ([" there"], [-1.0], 1)
    assert pick_continuation(toks, lps, 3, 8, 2, prompt_tokens=3) == ([" there"], [-1.0], 1)  # an unlisted BOS
    with pytest.raises(BadServerReply, match="lists 2 prompt tokens but counts 5"):
        pick_continuation(toks, lps, 3, 8, 2, prompt_tokens=5)


def test_continuation_at_first_token_is_an_error(lm):
    with pytest.raises(LMError, match="non-empty context"):
        lm.loglikelihood([ScoreRequest((), "Hello world")])


def test_empty_continuation_rejected(lm):
    with pytest.raises(LMError, match="empty continuation"):
        lm.loglikelihood([ScoreRequest(("a",), "")])


def test_too_long_becomes_context_too_long(lm):
    long = " ".join(["word"] * (MAX_MODEL_LEN + 5))
    with pytest.raises(ContextTooLong, match="maximum context length"):
        lm.loglikelihood([ScoreRequest((long,), " end")])


# ---- chat_text --------------------------------------------------------------------------------


def test_chat_text_round_trip_and_cache(lm, double):
    _, state = double
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo ✓"}]
    assert lm.chat_text(msgs) == render_chat(msgs, True)
    assert lm.chat_text(msgs, add_generation_prompt=False) == render_chat(msgs, False)
    n_calls = len(state.bodies)
    assert lm.chat_text(msgs) == render_chat(msgs, True)
    assert len(state.bodies) == n_calls  # cached
    tok_body = next(b for p, b in state.bodies if p == "/tokenize")
    assert tok_body == {"model": MODEL, "messages": msgs, "add_generation_prompt": True}


def test_chat_text_without_tokenize_endpoint(lm, double):
    _, state = double
    state.mode.add("no_tokenize")
    with pytest.raises(LMError, match="/tokenize.*template 'none'"):
        lm.chat_text([{"role": "user", "content": "x"}])


# ---- transport failures -----------------------------------------------------------------------


def test_dead_port_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(LMError) as err:
        load_lm(f"{url}#m")
    assert url in str(err.value) and "vllm serve" in str(err.value)


def test_unparsable_reply_is_an_lmerror(lm, double):
    _, state = double
    state.mode.add("garbage")
    with pytest.raises(LMError, match="not JSON"):
        lm.generate([{"role": "user", "content": "hi"}], GenerationConfig())


def test_one_reset_is_retried_two_are_not(lm, double):
    _, state = double
    state.resets_left = 1
    assert lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(seed=1)) == ["reply 0 seed=1\nSTOP tail"]
    state.resets_left = 2  # with PALIMPSEST_SERVER_RETRIES=0 the pool does not try again
    with pytest.raises(LMError, match="/chat/completions"):
        lm.generate([{"role": "user", "content": "hi"}], GenerationConfig())


def test_the_pool_retries_what_a_reset_left(double, monkeypatch):
    base, state = double
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "2")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}")
    lm.pool.backoff_s = 0.01
    state.resets_left = 3  # the first try resets twice (its own retry too), the pool's retry gets through
    assert lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(seed=1)) == ["reply 0 seed=1\nSTOP tail"]


def test_timeout_is_an_lmerror(double, monkeypatch):
    base, state = double
    monkeypatch.setenv("PALIMPSEST_SERVER_TIMEOUT", "0.3")
    from core.models.endpoints import timeout_from_env

    assert timeout_from_env() == 0.3  # the setting is read (a load under it would have 0.3 s too: not done here)
    monkeypatch.delenv("PALIMPSEST_SERVER_TIMEOUT")
    lm = load_lm(f"{base}#{MODEL}")  # loaded with the default timeout, however slow this machine is today
    lm.pool.timeout = 0.3  # then only the generation has 0.3 s, and the server takes 1.5 s (mode "slow")
    state.mode.add("slow")
    with pytest.raises(LMError, match="within 0.3 s"):
        lm.generate([{"role": "user", "content": "hi"}], GenerationConfig())


def test_vllm_command_is_documented():
    import core.models.server as mod

    assert VLLM_COMMAND.startswith("vllm serve ") and VLLM_COMMAND in mod.__doc__


# ---- dialects (core.models.dialect): what a server supports, probed at load ---------------------


def test_spec_takes_replicas_and_options():
    spec = parse_spec("openai:http://a:8000/v1, http://b:8001#org/M#tokenizer=smollm2-135m#max_length=8192")
    assert [u for u, _ in spec.urls] == ["http://a:8000/v1", "http://b:8001/v1"] and spec.model == "org/M"
    assert spec.tokenizer == "smollm2-135m" and spec.max_length == 8192 and spec.base == "http://a:8000/v1"
    assert parse_spec("http://a:8000/v1##max_length=10").model is None
    with pytest.raises(ModelNotFound, match="unknown option 'colour=red'"):
        parse_spec("http://a:8000/v1#m#colour=red")
    with pytest.raises(ModelNotFound, match="max_length='big'.*#max_length=8192"):
        parse_spec("http://a:8000/v1#m#max_length=big")
    with pytest.raises(ModelNotFound, match="'ftp://b' is not a server URL"):
        parse_spec("http://a:8000/v1,ftp://b#m")


def test_vllm_dialect_is_recorded(lm):
    d = lm.describe()
    ep = d["endpoints"][lm.base]
    assert ep["kind"] == "vllm" and ep["tokenize"] == "/tokenize" and ep["chat_tokenize"] and ep["n_honoured"]
    assert ep["logprobs"] == "echo" and d["max_length"] == MAX_MODEL_LEN
    assert d["max_length_source"] == "/v1/models max_model_len" and ep["alignment"]["tail_mean_logprob"] > -1


def test_llama_cpp_dialect_detected_and_its_gaps_said_at_load(double, caplog):
    base, state = double
    state.mode.add("llama")
    with caplog.at_level("WARNING"):
        lm = OpenAILM.from_spec(f"{base}#{MODEL}")
    d = lm.describe()["endpoints"][base]
    assert d["kind"] == "llama-cpp-python" and d["tokenize"] == "/extras/tokenize" and d["n_honoured"] is False
    said = caplog.text
    assert "assuming 4096 tokens" in said and "#max_length=N" in said  # never a silent 4096
    assert "cannot do chat-template scoring" in said and "#tokenizer=" in said
    assert lm.count_tokens("one two three") == 3  # the BOS its tokenize endpoint adds is taken off
    assert OpenAILM.from_spec(f"{base}#{MODEL}#max_length=64").max_length == 64


def test_the_bos_the_server_counts_is_not_a_scored_token(double):
    """llama-cpp-python counts a BOS in usage.prompt_tokens that it does not list: trusting usage
    scored the generated token as part of the reference (811 tokens instead of 810)."""
    base, state = double
    state.mode.add("llama")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}#max_length=64")
    out = lm.loglikelihood([ScoreRequest(("The keeper",), " read the letter")])[0]
    assert out.tokens == [" read", " the", " letter"] and " zzz" not in out.tokens


def test_ignored_n_becomes_separate_requests(double):
    base, state = double
    state.mode.add("llama")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}#max_length=64")
    state.bodies.clear()
    out = lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(n=3, seed=11, stop=("STOP",)))
    assert out == [f"reply 0 seed={s}\n" for s in (11, 12, 13)]
    assert [b["n"] for p, b in state.bodies] == [1, 1, 1]


def test_a_prefill_without_tokenizer_is_refused_before_any_generation(double):
    base, state = double
    state.mode.add("llama")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}#max_length=64")
    state.bodies.clear()
    with pytest.raises(LMError, match="cannot do continuing a prefill.*#tokenizer="):
        lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(), prefix="<rewrite>")
    with pytest.raises(LMError, match="REER.*cannot do chat-template scoring"):
        lm.require({"chat_template", "prefix"}, "REER")
    assert state.bodies == []


def test_shifted_logprobs_are_refused_naming_the_bos_fix(double):
    base, state = double
    state.mode |= {"llama", "shifted"}
    with pytest.raises(MisalignedServer, match="refusing.*perplexity.*add_bos_token=bool:true"):
        OpenAILM.from_spec(f"{base}#{MODEL}#max_length=64")
    state.mode.discard("llama")  # another server: a neutral cause
    with pytest.raises(MisalignedServer, match="shifted by one position or belong to another model"):
        OpenAILM.from_spec(f"{base}#{MODEL}")


def test_the_window_is_learned_from_an_overflow_reply(double):
    base, state = double
    state.mode.add("llama")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}")
    assert lm.max_length == 4096
    with pytest.raises(ContextTooLong):
        lm.loglikelihood([ScoreRequest(("word " * 70,), "end")])
    assert lm.max_length == MAX_MODEL_LEN


def test_client_tokenizer_renders_chats_and_prefills_here(double):
    base, state = double
    state.mode.add("llama")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}#tokenizer=smollm2-135m#max_length=64")
    msgs = [{"role": "user", "content": "hi"}]
    tok = lm.client_tokenizer
    assert lm.chat_text(msgs) == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert lm.missing({"chat_template", "prefix", "count_tokens", "score"}) == ""
    state.bodies.clear()
    out = lm.generate(msgs, GenerationConfig(n=2, seed=5, max_new_tokens=8), prefix="<rewrite>\nThe")
    path, body = state.bodies[-1]
    assert path == "/v1/completions" and body["prompt"] == lm.chat_text(msgs) + "<rewrite>\nThe"
    assert len(out) == 2 and all(o.finish_reason == "length" for o in out)
    assert lm.count_tokens("Hello world") == len(tok("Hello world", add_special_tokens=False)["input_ids"])


def test_the_token_sink_hears_once_when_done(lm):
    from core.models.lm import on_tokens

    heard = []
    with on_tokens(heard.append):
        lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(n=2, max_new_tokens=9, stop=("STOP",)))
    assert len(heard) == 1 and heard[0].done and heard[0].budget == 9
    assert heard[0].texts == ("reply 0 seed=None\n", "reply 1 seed=None\n") and heard[0].tokens == 4


def test_reer_and_r2_refuse_a_server_that_cannot_before_any_run(double, tmp_path):
    from core.r2.jobs import r2_job
    from core.reer.config import ReerConfig
    from core.reer.jobs import reer_job
    from core.store import open_store

    base, state = double
    state.mode.add("llama")
    lm = OpenAILM.from_spec(f"{base}#{MODEL}#max_length=64")
    store = open_store(None)
    pid, _ = store.add_prompt("Write a note.", "A short note.")
    state.bodies.clear()
    with pytest.raises(LMError, match="^REER: .*cannot do chat-template scoring.*#tokenizer="):
        next(reer_job(store, lm, pid, ReerConfig()))
    with pytest.raises(LMError, match="^REER: .*cannot do continuing a prefill"):
        next(reer_job(store, lm, pid, ReerConfig(template="none")))
    with pytest.raises(LMError, match="^the R2 writer: .*continuing a prefill"):
        next(r2_job(store, lm, None, pid))
    assert state.bodies == [] and store.list_runs() == []  # nothing generated, no run opened


def test_models_listing_waits_as_long_as_any_request(double, monkeypatch):
    """/v1/models was capped at 30 s while the message said to raise PALIMPSEST_SERVER_TIMEOUT."""
    import core.models.server_spec as server_spec

    base, _ = double
    seen = []
    real = server_spec.request_json
    monkeypatch.setattr(server_spec, "request_json", lambda url, *a, **kw: seen.append((url, kw["timeout"])) or real(url, *a, **kw))
    monkeypatch.setenv("PALIMPSEST_SERVER_TIMEOUT", "45")
    OpenAILM.from_spec(f"{base}#{MODEL}")
    assert (f"{base}/models", 45.0) in seen


def test_the_cli_says_connecting_not_float32_for_a_server(double, capsys):
    from studio.cli.common import load_model as _load

    base, _ = double
    _load(f"{base}#{MODEL}#max_length=60")
    err = capsys.readouterr().err
    assert "connecting to" in err and "(float32)" not in err
    assert "vllm server, 1 endpoint(s), window 60 tokens (spec), tokenizer the server" in err


def test_a_run_records_what_the_server_supports(double):
    from core.reer.config import ReerConfig
    from core.reer.search import reer_search

    base, _ = double
    lm = OpenAILM.from_spec(f"{base}#{MODEL}")
    first = next(reer_search(lm, "run1", "p1", "Write a note.", "A short note.", ReerConfig(template="none")))
    assert first.kind == "run_started" and first.server["endpoints"][base]["kind"] == "vllm"
    assert first.server["max_length"] == MAX_MODEL_LEN and first.to_dict()["server"]["model"] == MODEL
