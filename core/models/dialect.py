"""What an OpenAI-compatible server supports, found by probing each endpoint once, and the
alignment check that refuses a server whose log-probs cannot be trusted.

Servers differ (vLLM, SGLang, llama.cpp's server, llama-cpp-python): `probe` asks a few cheap
questions and records the answers in a `Dialect`, which `core.models.server.OpenAILM` follows
and the run records (`OpenAILM.describe()`):
- kind: "vllm" (GET /v1/models lists `max_model_len`, or POST {root}/tokenize answers),
  "llama-cpp-python" (POST {root}/extras/tokenize answers), "llama.cpp" (GET {root}/props
  answers), else "openai-compatible";
- tokenize: the endpoint that counts tokens ("/tokenize", "/extras/tokenize" or None), and
  whether vLLM's chat form of /tokenize (messages in, template applied) is there;
- n: whether `n` > 1 in one request is honoured (checked on /v1/completions with max_tokens 1);
  when not, generate sends separate requests;
- logprobs: how prompt log-probs come back: "echo" (echo + logprobs, the OpenAI legacy way),
  "prompt_logprobs" (vLLM's extension), or None (scoring is impossible on this server);
- context window: from /v1/models (`max_model_len`, `context_length`, `n_ctx`, `meta.n_ctx_train`)
  or {root}/props (`default_generation_settings.n_ctx`), with where it came from; None when the
  server does not say (the spec's `max_length=` option must then give it).

The alignment check (`check_alignment`) scores a short known text (counting from one to twenty)
in one request and refuses the server when the numbers are implausible: a perplexity over
PERPLEXITY_LIMIT on the whole probe, or the counting tail (which any working model predicts
almost surely) scoring below TAIL_LIMIT per token, which is what log-probs shifted by one
position look like. The message names the likely cause; for llama-cpp-python on a model whose
GGUF adds no BOS token, that is the known off-by-one, fixed by restarting it with
`--kv_overrides tokenizer.ggml.add_bos_token=bool:true`.

Does not know how to send requests (core.models.endpoints) or what they mean (core.models.server).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

from core.models.endpoints import BadServerReply, Endpoint, request_json
from core.models.lm import LMError

log = logging.getLogger(__name__)

PROBE_COUNTING = "Count with me: one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, "
PROBE_TAIL = "thirteen, fourteen, fifteen, sixteen, seventeen, eighteen, nineteen, twenty."
PERPLEXITY_LIMIT = 1000.0  # on the whole probe: the built-in 135M model 4.0, its one-position shift 33,346
TAIL_LIMIT = -2.5  # mean log-prob per token of the counting tail: the built-in 135M model -1.36, shifted -10.2
BOS_FIX = "--kv_overrides tokenizer.ggml.add_bos_token=bool:true"


class MisalignedServer(LMError):
    """The server's log-probs are shifted or implausible: scores from it would be wrong."""


@dataclass
class Dialect:
    """What one endpoint supports (module docstring); recorded with runs as a dict."""

    kind: str = "openai-compatible"  # vllm | llama-cpp-python | llama.cpp | openai-compatible
    tokenize: str | None = None  # endpoint path under the root that tokenizes a plain text
    chat_tokenize: bool = False  # vLLM's /tokenize takes messages and applies the chat template
    n_honoured: bool | None = None  # n > 1 gives n choices in one request; None: not checked
    logprobs: str | None = "echo"  # echo | prompt_logprobs | None
    context_window: int | None = None  # tokens, when the server says
    context_source: str = ""  # where context_window came from ("/v1/models max_model_len", ...)
    specials_in_count: int = 0  # tokens the tokenize endpoint adds on its own (a BOS), subtracted
    alignment: dict | None = None  # the alignment check's numbers, once run

    def as_dict(self) -> dict:
        return asdict(self)


def _try(call: Callable[[], Any]) -> Any:
    """The call's reply, or None when the server answers with an HTTP error (no such endpoint)."""
    try:
        return call()
    except BadServerReply:
        return None


def window_from_models(entry: dict) -> tuple[int | None, str]:
    """The context window a /v1/models entry reports, and the field it came from."""
    for key in ("max_model_len", "context_length", "context_window", "n_ctx"):
        value = entry.get(key)
        if isinstance(value, int) and value > 0:
            return value, f"/v1/models {key}"
    meta = entry.get("meta")
    if isinstance(meta, dict):
        for key in ("n_ctx", "n_ctx_train"):
            value = meta.get(key)
            if isinstance(value, int) and value > 0:
                return value, f"/v1/models meta.{key}"
    return None, ""


def probe(ep: Endpoint, model: str, entry: dict, *, timeout: float) -> Dialect:
    """Ask `ep` what it supports (a handful of small requests; see the module docstring)."""
    d = Dialect()
    post = lambda url, body: request_json(url, body, timeout=timeout, api_key=ep.api_key)  # noqa: E731
    d.context_window, d.context_source = window_from_models(entry)
    if "max_model_len" in entry:
        d.kind = "vllm"
    vllm_tok = _try(lambda: post(f"{ep.root}/tokenize", {"model": model, "prompt": "a", "add_special_tokens": False}))
    if isinstance(vllm_tok, dict) and ("tokens" in vllm_tok or "count" in vllm_tok):
        d.kind, d.tokenize = "vllm", "/tokenize"
        chat = _try(lambda: post(f"{ep.root}/tokenize", {"model": model, "add_generation_prompt": True,
                                                          "messages": [{"role": "user", "content": "a"}]}))
        d.chat_tokenize = isinstance(chat, dict) and isinstance(chat.get("tokens"), list)
    else:
        extras = _try(lambda: post(f"{ep.root}/extras/tokenize", {"model": model, "input": "a"}))
        if isinstance(extras, dict) and isinstance(extras.get("tokens"), list):
            d.kind, d.tokenize = "llama-cpp-python", "/extras/tokenize"
            d.specials_in_count = max(0, len(extras["tokens"]) - 1)  # "a" is one token; the rest are added
    if d.context_window is None:
        props = _try(lambda: request_json(f"{ep.root}/props", timeout=timeout, api_key=ep.api_key))
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        if isinstance(n_ctx, int) and n_ctx > 0:
            d.context_window, d.context_source = n_ctx, "/props n_ctx"
            d.kind = "llama.cpp" if d.kind == "openai-compatible" else d.kind
    d.n_honoured, d.logprobs = _probe_completions(ep, model, post)
    return d


def _probe_completions(ep: Endpoint, model: str, post) -> tuple[bool | None, str | None]:
    """(n honoured, prompt log-prob mode) from two one-token completions."""
    url = f"{ep.base}/completions"
    try:
        reply = post(url, {"model": model, "prompt": "Hello", "max_tokens": 1, "n": 2, "temperature": 1.0})
        choices = reply.get("choices") if isinstance(reply, dict) else None
        n_ok = isinstance(choices, list) and len(choices) == 2
    except BadServerReply:
        n_ok = None
    echo = _try(lambda: post(url, {"model": model, "prompt": "Hello world", "max_tokens": 1, "echo": True,
                                   "logprobs": 0, "temperature": 0}))
    lp = _first_choice(echo).get("logprobs") if _first_choice(echo) else None
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list) and len(lp["tokens"]) >= 2:
        return n_ok, "echo"
    prompt_lp = _try(lambda: post(url, {"model": model, "prompt": "Hello world", "max_tokens": 1,
                                        "prompt_logprobs": 0, "temperature": 0}))
    first = _first_choice(prompt_lp)
    if first and isinstance(first.get("prompt_logprobs"), list):
        return n_ok, "prompt_logprobs"
    return n_ok, None


def _first_choice(reply: Any) -> dict | None:
    choices = reply.get("choices") if isinstance(reply, dict) else None
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None


def alignment_numbers(counting: list[float], tail: list[float]) -> dict:
    """Perplexity over the whole probe and the tail's mean log-prob per token."""
    every = counting + tail
    mean = sum(every) / len(every)
    return {"tokens": len(every), "perplexity": round(math.exp(-mean), 2),
            "tail_mean_logprob": round(sum(tail) / len(tail), 3)}


def split_tail(tokens: list[str], tail_chars: int) -> int:
    """How many tokens at the end of `tokens` cover the last `tail_chars` characters (a token that
    straddles the boundary counts as tail)."""
    n, chars = 0, 0
    for tok in reversed(tokens):
        if chars >= tail_chars:
            break
        chars += len(tok)
        n += 1
    return n


def check_alignment(score: Callable[[str, str], tuple[list[str], list[float]]], where: str, kind: str) -> dict:
    """Score the probe through `score(context, continuation) -> (tokens, log-probs)` and refuse a
    server whose numbers are implausible (module docstring); the numbers when it passes.

    One request: the whole probe after its first word, the counting tail split off its end by
    characters. (Two requests, the counting alone then the tail after it, cost ~85 echoed tokens
    for the same numbers; echoed log-probs are what is slow on llama-cpp-python.)"""
    tokens, lps = score("Count", PROBE_COUNTING[len("Count"):] + PROBE_TAIL)  # the first token has no log-prob
    n_tail = split_tail(tokens, len(PROBE_TAIL))
    if not 0 < n_tail < len(lps):
        raise MisalignedServer(f"refusing the server at {where}: its echoed tokens for the alignment probe do not "
                               "spell the probe text; its log-probs cannot be checked")
    numbers = alignment_numbers(lps[:-n_tail], lps[-n_tail:])
    shifted = numbers["tail_mean_logprob"] < TAIL_LIMIT
    absurd = numbers["perplexity"] > PERPLEXITY_LIMIT
    if shifted or absurd:
        cause = (f"llama-cpp-python shifts log-probs by one position when the model adds no BOS token; "
                 f"restart it with {BOS_FIX}") if kind == "llama-cpp-python" else (
                 "the server's prompt log-probs look shifted by one position or belong to another model; "
                 "check the model it serves and its BOS-token setting")
        raise MisalignedServer(
            f"refusing the server at {where}: its log-probs on a known text are implausible (perplexity "
            f"{numbers['perplexity']:g}, counting tail {numbers['tail_mean_logprob']:g} per token; a working "
            f"model is above {TAIL_LIMIT:g}, the built-in 135M one at -1.4). Likely cause: {cause}.")
    return numbers
