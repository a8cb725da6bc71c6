"""OpenAI-compatible server backend of the LM protocol (`core.models.lm`): vLLM, SGLang, llama.cpp.

Run a model on a GPU machine with vLLM, then point Palimpsest at it:

    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000 --max-model-len 16384
    palimpsest ... --model http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct

Spec syntax (docs/serving.md):

    [openai:]URL[,URL...][#MODEL][#tokenizer=TOK][#max_length=N]

- URL: http(s)://host:port/v1; a bare http://host:port gets /v1 appended. Several URLs, joined by
  commas, are replicas serving the same model: requests are spread over them and retried
  elsewhere (core.models.endpoints: least in-flight, backoff, dropping a dead one).
- MODEL: the served model's id; without it the first model GET {base}/models lists is used.
- tokenizer=TOK: the served model's tokenizer on this machine (a local folder with
  tokenizer files, a hub id in the local cache, or the built-in alias smollm2-135m). With it,
  chat templates and prefills are rendered here and sent as raw prompts to /v1/completions, so
  prefix continuation, chat-template scoring and token counts work on any OpenAI-compatible
  server. Without it the server's own endpoints are used (chat templates and prefills need vLLM:
  /tokenize, /detokenize, continue_final_message); what the server lacks is said at load.
- max_length=N: the context window in tokens when the server does not report one (vLLM does;
  llama-cpp-python does not). Without either, 4096 is assumed with a warning at load, and the
  first overflow reply that names the real window corrects it.
The API keys, timeouts and retries: core.models.endpoints.

Knows:
- At load: GET /models (within the request timeout, no separate cap), then each endpoint is probed
  once, replicas side by side (core.models.dialect: tokenize endpoint, `n` honoured, echo or prompt_logprobs, context
  window), and the alignment check scores a short known text: a server whose log-probs are
  shifted or implausible is refused (MisalignedServer) naming the likely cause. `describe()`
  returns what was detected, for records.
- `generate`: with a client tokenizer, POST /completions with the rendered prompt + prefix;
  else POST /chat/completions (a prefix via vLLM's continue_final_message). `n` not honoured ->
  separate requests (seed + i). Finish reasons come from each choice's `finish_reason`.
  The token sink (core.models.lm.on_tokens) is called once with the finished texts (done=True).
- `loglikelihood`: up to 8 requests of a call at a time, from one thread pool kept for every call;
  each: POST /completions with `echo` + `logprobs=0` + `max_tokens=1` (or vLLM's
  `prompt_logprobs`) on the joined text; the continuation's tokens are located by character
  positions right-aligned to the prompt's end, after taking the generated token(s) off the end
  (their count from `usage.completion_tokens` checked against the echoed text), and the listed
  prompt tokens are checked against `usage.prompt_tokens` (equal, or one more for a BOS the server
  counts but does not list, plus the special tokens before the continuation that it leaves out of
  the echo, checked against the text: llama-cpp-python drops every `<|im_start|>` of a ChatML
  prompt); a disagreement is an error, never a guess. A token that straddles the
  context/continuation boundary counts as continuation. `precision` is ignored; nothing is
  left-truncated (a text that does not fit raises ContextTooLong).
- `chat_text`, `count_tokens`: the client tokenizer, else the server's tokenize endpoint (vLLM's
  /tokenize, llama-cpp-python's /extras/tokenize minus the specials it adds), else LMError
  saying what to add. Never a word count.
- `missing(needs)`: which of "chat_template", "prefix", "count_tokens", "score" this model cannot
  do, as one line; `require(needs, what)` raises it before any work starts.

Does not know: tokenizing context pieces one by one (servers tokenize the joined text), local
models, REER templates, the spec's syntax and the client tokenizer (core.models.server_spec), how
echoed log-probs are read (core.models.echo). Standard library only.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Literal, Sequence

from core.models.dialect import Dialect, check_alignment, probe
from core.models.echo import (  # noqa: F401  (re-exported: older imports name them here)
    SPECIAL_RE,
    checked_logprobs,
    from_prompt_logprobs,
    generated_count,
    pick_continuation,
    reply_field,
    unlisted_specials,
)
from core.models.endpoints import (  # noqa: F401  (re-exported: older imports name them here)
    API_KEY_ENVS,
    DEFAULT_TIMEOUT_S,
    TIMEOUT_ENV,
    VLLM_COMMAND,
    AllEndpointsDown,
    BadServerReply,
    EndpointPool,
    ServerUnreachable,
    api_key_from_env,
    error_text,
    pool_for,
    request_json,
    timeout_from_env,
)
from core.models.lm import (
    BUILTIN_ALIAS,
    FINISH_STOP,
    ContextTooLong,
    Generation,
    GenerationConfig,
    LMError,
    Precision,
    ScoreRequest,
    TokenLogprobs,
    TokenProgress,
    cut_at_stop,
    stop_reason,
    token_sink,
    wait_unless_stopped,
)
from core.models.server_spec import (  # noqa: F401  (re-exported)
    SPEC_OPTIONS,
    VLLM_SPEC,
    ServerSpec,
    choose_model,
    list_models,
    load_tokenizer,
    parse_spec,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 4096  # assumed, with a warning, when neither the server nor the spec says
SCORE_WORKERS = 8  # concurrent /completions requests of one loglikelihood call
SCORE_POOL_WORKERS = 256  # threads shared by every call (many items in flight score at once)
CHAT_CACHE_SIZE = 1024  # rendered chats kept per model
NEEDS = {  # capability -> what uses it, for the one-line message
    "chat_template": "chat-template scoring (REER, score --template chat/train, the log-prob judge)",
    "prefix": "continuing a prefill (REER rewrites, R2 judge lines)",
    "count_tokens": "token counts (R2 rewards, quality filters)",
    "score": "scoring (log-probs of a text)",
}
_WINDOW_RE = re.compile(r"(?:context window of|maximum context length is)\s+(\d+)", re.I)


# ---- the backend ------------------------------------------------------------------------------


class OpenAILM:
    """A model behind one or more OpenAI-compatible servers; one instance per spec, safe to call
    from many threads at once."""

    backend = "server"  # core.models.load.BACKENDS

    def __init__(self, spec: ServerSpec, model: str, *, name: str, pool: EndpointPool,
                 max_length: int = DEFAULT_MAX_LENGTH, dialect: Dialect | None = None,
                 tokenizer: str | None = None, client_tokenizer: Any = None):
        self.has_fast_path = False  # the server computes in its own dtype: no bf16 twin here
        self.spec = spec
        self.model = model
        self.name = name
        self.pool = pool
        self.max_length = max_length
        self.dialect = dialect or Dialect()
        self.tokenizer_name = tokenizer or model  # count_tokens' last resort: a local tokenizer of that name
        self.client_tokenizer = client_tokenizer  # the spec's tokenizer= (renders chats and prefills here)
        self._local_tokenizer = client_tokenizer
        self._chat_cache: OrderedDict[str, str] = OrderedDict()
        self._special_re: re.Pattern | None = None  # special-token texts (_specials), made on first need
        self._lock = threading.Lock()  # the chat cache and loading the local tokenizer
        self._tok_lock = threading.Lock()  # calls into the local tokenizer

    # compatibility with code and tests that knew one server
    base = property(lambda self: self.spec.base)
    root = property(lambda self: self.spec.root)
    timeout = property(lambda self: self.pool.timeout)

    @classmethod
    def from_spec(cls, spec: str, timeout: float | None = None, tokenizer: str | None = None,
                  key_hosts: frozenset | None = None, check: bool = True) -> "OpenAILM":
        """Connect to the servers named by `spec`, pick the model, probe each endpoint and run the
        alignment check (`check`). `tokenizer`: like the spec's `tokenizer=` option. `key_hosts`:
        the (host, port) pairs the API key may go to (core.models.endpoints)."""
        parsed = parse_spec(spec)
        if tokenizer and not parsed.tokenizer:
            parsed = replace(parsed, tokenizer=tokenizer)
        pool = pool_for(list(parsed.urls), timeout=timeout or timeout_from_env(), key_hosts=key_hosts)
        models, first = None, pool.endpoints[0]
        for ep in pool.endpoints:  # the first replica that answers lists the models
            try:
                models = list_models(ep.base, timeout=pool.timeout, api_key=ep.api_key)
                first = ep
                break
            except BadServerReply as exc:
                raise _why_refused(exc, ep.key_withheld, ep.base) from None
            except ServerUnreachable as exc:
                if len(pool.endpoints) == 1:
                    raise
                pool.drop(ep, str(exc))
        entry = choose_model(spec, parsed, models or [])
        model = parsed.model or entry["id"]
        client_tok = load_tokenizer(parsed.tokenizer, spec) if parsed.tokenizer else None
        def probe_one(ep) -> None:
            try:
                ep.dialect = probe(ep, model, entry, timeout=pool.timeout)
            except ServerUnreachable as exc:
                if len(pool.endpoints) == 1:
                    raise
                pool.drop(ep, str(exc))

        _each(probe_one, [ep for ep in pool.endpoints if ep.dropped_at is None])
        dialect = first.dialect
        max_length = parsed.max_length or dialect.context_window
        if max_length is None:
            log.warning("%s: the server does not report its context window; assuming %d tokens. Give the real one "
                        "with #max_length=N in the spec", spec.strip(), DEFAULT_MAX_LENGTH)
            max_length = DEFAULT_MAX_LENGTH
        lm = cls(parsed, model, name=spec.strip(), pool=pool, max_length=max_length, dialect=dialect,
                 tokenizer=parsed.tokenizer, client_tokenizer=client_tok)
        lacking = lm.missing(set(NEEDS))
        if lacking:
            log.warning("%s: %s", spec.strip(), lacking)
        if check and dialect.logprobs:
            def align(ep) -> None:
                ep.dialect.alignment = check_alignment(lm._probe_scorer(ep), ep.base, ep.dialect.kind)

            _each(align, pool.live)
        return lm

    def describe(self) -> dict:
        """What was detected, for records: per endpoint its dialect, plus the window and tokenizer."""
        return {"model": self.model, "max_length": self.max_length,
                "max_length_source": "spec" if self.spec.max_length else (self.dialect.context_source or "assumed"),
                "tokenizer": self.spec.tokenizer,
                "endpoints": {ep.base: ep.dialect.as_dict() if ep.dialect else None for ep in self.pool.endpoints}}

    def _call(self, path: str, body: dict | None, *, at_root: bool = False, with_endpoint: bool = False) -> Any:
        """The reply's JSON (with `with_endpoint`: and the base URL of the endpoint that answered)."""
        try:
            reply, ep = self.pool.call_on(path, body, at_root=at_root)
            return (reply, ep.base) if with_endpoint else reply
        except ContextTooLong as exc:
            self._learn_window(str(exc))
            raise
        except BadServerReply as exc:
            first = self.pool.endpoints[0]
            raise _why_refused(exc, first.key_withheld, first.base) from None

    def _learn_window(self, message: str) -> None:
        m = _WINDOW_RE.search(message)
        if m and not self.spec.max_length and int(m.group(1)) != self.max_length:
            log.warning("%s: the server says its context window is %s tokens; using that", self.name, m.group(1))
            self.max_length = int(m.group(1))

    # ---- what this model can do -----------------------------------------------------------

    def missing(self, needs: set[str]) -> str:
        """'' when this model can do every capability in `needs` (NEEDS' keys); else one line
        saying what it cannot and how to fix it."""
        d, tok = self.dialect, self.client_tokenizer is not None
        cannot = []
        if "chat_template" in needs and not tok and not d.chat_tokenize:
            cannot.append("chat_template")
        if "prefix" in needs and not tok and d.kind != "vllm":
            cannot.append("prefix")
        if "count_tokens" in needs and not tok and not d.tokenize:
            cannot.append("count_tokens")
        if "score" in needs and not d.logprobs:
            cannot.append("score")
        if not cannot:
            return ""
        what = "; ".join(NEEDS[c] for c in cannot)
        fix = ("this server returns no prompt log-probs (echo or prompt_logprobs)" if cannot == ["score"] else
               f"add the served model's tokenizer to the spec: {self.name.split('#')[0]}#{self.model}"
               f"#tokenizer=<local folder or {BUILTIN_ALIAS}>"
               + ("" if d.kind == "vllm" else " (or serve it with vLLM, whose /tokenize does this)"))
        return f"the {d.kind} server for {self.model} cannot do {what}: {fix}"

    def require(self, needs: set[str], what: str) -> None:
        """LMError before any work when `what` needs a capability this model lacks."""
        lacking = self.missing(needs)
        if lacking:
            raise LMError(f"{what}: {lacking}")

    # ---- protocol -----------------------------------------------------------------------------

    def generate(self, messages: Sequence[dict], config: GenerationConfig, prefix: str = "") -> list[Generation]:
        """`config.n` replies in order, cut at stop strings (module docstring)."""
        if self.client_tokenizer is not None:
            path, body, read = self._completion_body(messages, config, prefix)
        else:
            if prefix and self.dialect.kind != "vllm":
                self.require({"prefix"}, "generate with a prefill")
            path, body, read = self._chat_body(messages, config, prefix)
        if config.n == 1 or self.dialect.n_honoured is False:
            bodies = [dict(body, n=1, **({"seed": config.seed + i} if config.seed is not None else {}))
                      for i in range(config.n)]
        else:
            bodies = [dict(body, n=config.n)]
        choices: list = []
        for b in bodies:
            got = reply_field(wait_unless_stopped(lambda b=b: self._call(path, b)), path, "choices")
            if not isinstance(got, list):
                raise BadServerReply(f"the server at {path} sent choices that are not a list")
            choices += sorted(got, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        if len(choices) < config.n and len(bodies) == 1:  # n ignored: ask for the rest one by one
            self.dialect.n_honoured = False
            for i in range(len(choices), config.n):
                seed = {"seed": config.seed + i} if config.seed is not None else {}
                choices += reply_field(wait_unless_stopped(lambda: self._call(path, dict(body, n=1, **seed))),
                                  path, "choices")[:1]
        if len(choices) != config.n:
            raise BadServerReply(f"the server at {path} sent {len(choices)} choices for n={config.n}")
        out = []
        for c in choices:
            text = read(c) or ""
            reason = c.get("finish_reason") if isinstance(c, dict) else None
            out.append(Generation(cut_at_stop(text, config.stop),
                                  stop_reason(text, config.stop, str(reason) if reason else FINISH_STOP)))
        sink = token_sink()
        if sink is not None:
            made = max((self._count_or_zero(g) for g in out), default=0)
            sink(TokenProgress(tuple(str(g) for g in out), made, config.max_new_tokens, done=True))
        return out

    def _count_or_zero(self, text: str) -> int:
        try:
            return self.count_tokens(text)
        except LMError:
            return 0

    def _sampling(self, config: GenerationConfig) -> dict:
        body: dict[str, Any] = {"model": self.model, "max_tokens": config.max_new_tokens,
                                "temperature": config.temperature, "top_p": config.top_p}
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        if config.top_k is not None:  # an extra parameter vLLM and llama.cpp read; -1 is "off" to both
            body["top_k"] = config.top_k if config.top_k > 0 else -1
        body.update(config.extra)
        return body

    def _chat_body(self, messages, config, prefix):
        messages = list(messages)
        body = self._sampling(config)
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        return "/chat/completions", body, lambda c: reply_field(c, "/chat/completions", "message", "content")

    def _completion_body(self, messages, config, prefix):
        body = self._sampling(config)
        body["prompt"] = self._raw_prompt(self.chat_text(messages, add_generation_prompt=True) + prefix)
        return "/completions", body, lambda c: reply_field(c, "/completions", "text")

    def _raw_prompt(self, text: str) -> str:
        """`text` as a raw prompt: without a leading BOS text when the tokenizer adds a BOS itself
        (the server adds its own, as the model asks)."""
        tok = self.client_tokenizer
        bos = getattr(tok, "bos_token", None) if tok is not None else None
        if bos and text.startswith(bos):
            with self._tok_lock:
                ids = tok("a", add_special_tokens=True)["input_ids"]
            if ids and ids[0] == tok.bos_token_id:
                return text[len(bos):]
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens of `text`: the client tokenizer, else the server's tokenize endpoint, else a
        local tokenizer named like the served model; LMError when none is there."""
        if not text:
            return 0
        if self.client_tokenizer is None and self.dialect.tokenize == "/tokenize":
            reply = self._call("/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False},
                               at_root=True)
            count = reply.get("count") if isinstance(reply, dict) else None
            return int(count) if isinstance(count, int) else len(reply_field(reply, "/tokenize", "tokens"))
        if self.client_tokenizer is None and self.dialect.tokenize == "/extras/tokenize":
            reply = self._call("/extras/tokenize", {"model": self.model, "input": text}, at_root=True)
            return max(0, len(reply_field(reply, "/extras/tokenize", "tokens")) - self.dialect.specials_in_count)
        tok = self._tokenizer()
        with self._tok_lock:  # a fast tokenizer's encode is not safe from many threads at once ("Already borrowed")
            return len(tok(text, add_special_tokens=False)["input_ids"])

    def _tokenizer(self):
        """The client tokenizer, else a local one named like the served model (loaded once)."""
        with self._lock:
            if self._local_tokenizer is None:
                try:
                    from transformers import AutoTokenizer

                    self._local_tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name, local_files_only=True)
                except (ImportError, OSError, ValueError) as exc:
                    raise LMError(
                        f"cannot count tokens for {self.name}: the server has no tokenize endpoint and no local "
                        f"tokenizer named {self.tokenizer_name!r} was found ({str(exc).splitlines()[0][:120]}). "
                        f"Add #tokenizer=<local folder or {BUILTIN_ALIAS}> to the spec, or use a vLLM server."
                    ) from None
            return self._local_tokenizer

    def chat_text(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The chat template's rendering: the client tokenizer's, else vLLM's /tokenize then
        /detokenize (cached)."""
        if self.client_tokenizer is not None:
            with self._tok_lock:
                return self.client_tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                                 add_generation_prompt=add_generation_prompt)
        key = json.dumps([list(messages), add_generation_prompt], sort_keys=True, ensure_ascii=False)
        with self._lock:
            if key in self._chat_cache:
                self._chat_cache.move_to_end(key)
                return self._chat_cache[key]
        text = self._render_chat(list(messages), add_generation_prompt)
        with self._lock:
            self._chat_cache[key] = text
            while len(self._chat_cache) > CHAT_CACHE_SIZE:
                self._chat_cache.popitem(last=False)
        return text

    def _render_chat(self, messages: list[dict], add_generation_prompt: bool) -> str:
        if not self.dialect.chat_tokenize and self.dialect.kind != "openai-compatible":
            self.require({"chat_template"}, "render the chat template")
        try:
            body = {"model": self.model, "messages": messages, "add_generation_prompt": add_generation_prompt}
            ids = reply_field(self._call("/tokenize", body, at_root=True), "/tokenize", "tokens")
            return str(reply_field(self._call("/detokenize", {"model": self.model, "tokens": ids}, at_root=True),
                              "/detokenize", "prompt"))
        except BadServerReply as exc:
            if exc.status in (404, 405):
                raise LMError(
                    f"scoring with the chat template against {self.root} needs vLLM's /tokenize and /detokenize "
                    f"endpoints, which this server does not have ({exc}). Add #tokenizer=<local folder or "
                    f"{BUILTIN_ALIAS}> to the spec, or score with template 'none' (--template none)."
                ) from None
            raise

    def loglikelihood(
        self,
        requests: Sequence[ScoreRequest],
        precision: Precision = "fp32",
        truncate: Literal["error", "left"] = "error",
    ) -> list[TokenLogprobs]:
        """Continuation log-probs from {base}/completions, up to 8 requests at a time.

        `precision` is ignored (the server's dtype rules) and nothing is truncated: a text too
        long for the server raises ContextTooLong whatever `truncate` says.
        """
        self.require({"score"}, "scoring")
        for req in requests:
            if not req.continuation:
                raise LMError("scoring request with an empty continuation: nothing to score")
        if len(requests) <= 1:
            return [self._score_one(r) for r in requests]
        room = threading.BoundedSemaphore(SCORE_WORKERS)  # this call's share: at most 8 at a time

        def one(req: ScoreRequest) -> TokenLogprobs:
            with room:
                return self._score_one(req)
        return list(_score_pool().map(one, requests))

    def _score_one(self, req: ScoreRequest, call=None) -> TokenLogprobs:
        context = self._raw_prompt("".join(req.context)) if req.context else ""
        text = context + req.continuation
        body: dict[str, Any] = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0}
        if self.dialect.logprobs == "prompt_logprobs":
            body["prompt_logprobs"] = 0
        else:
            body.update(echo=True, logprobs=0)
        if call is None:
            reply, where = self._call("/completions", body, with_endpoint=True)
        else:
            reply, where = call("/completions", body)
        choice = reply_field(reply, "/completions", "choices", 0)
        usage = reply.get("usage") if isinstance(reply, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        if self.dialect.logprobs == "prompt_logprobs":
            tokens, logprobs = from_prompt_logprobs(reply_field(choice, "/completions", "prompt_logprobs"))
            listed = len(tokens)
        else:
            lp = reply_field(choice, "/completions", "logprobs")
            tokens = reply_field(lp, "/completions", "tokens")
            logprobs = reply_field(lp, "/completions", "token_logprobs")
            if not (isinstance(tokens, list) and isinstance(logprobs, list) and len(tokens) == len(logprobs)):
                raise BadServerReply("the server sent logprobs lists of different lengths")
            tokens = [str(t) for t in tokens]
            listed = len(tokens) - generated_count(tokens, text, choice.get("text"), usage.get("completion_tokens"),
                                                   self._specials())
        cont, cont_lps, n_ctx = pick_continuation(tokens, logprobs, len(context), len(text), listed,
                                                  usage.get("prompt_tokens"), text, self._specials())
        if not cont:
            raise BadServerReply(f"the server echoed no tokens for the continuation {req.continuation[:40]!r}")
        if any(v is None for v in cont_lps):
            raise LMError(
                f"the continuation {req.continuation[:40]!r} starts at the first token, which the server gives "
                "no log-prob for; give the request a non-empty context")
        return TokenLogprobs(cont, checked_logprobs(cont_lps, cont, where), context_tokens=n_ctx, truncated=0)

    def _specials(self) -> re.Pattern:
        """The special-token texts: the client tokenizer's own, else SPECIAL_RE's shapes."""
        if self._special_re is None:
            tok = self.client_tokenizer
            names = sorted({str(t) for t in (getattr(tok, "all_special_tokens", None) or []) if t}, key=len,
                           reverse=True) if tok is not None else []
            self._special_re = re.compile("|".join(map(re.escape, names))) if names else SPECIAL_RE
        return self._special_re

    def _probe_scorer(self, ep):
        """score(context, continuation) -> log-probs, sent to endpoint `ep` only (the alignment check)."""
        def call(path, body):
            return request_json(ep.base + path, body, timeout=self.pool.timeout, api_key=ep.api_key), ep.base

        def score(context: str, continuation: str) -> tuple[list[str], list[float]]:
            got = self._score_one(ScoreRequest((context,) if context else (), continuation), call)
            return got.tokens, got.logprobs
        return score


_SCORE_POOL: list[ThreadPoolExecutor] = []  # one pool for every model's scoring, made on first need
_SCORE_POOL_LOCK = threading.Lock()


def _score_pool() -> ThreadPoolExecutor:
    """The threads that send scoring requests, shared and kept (a pool per call cost its threads'
    start-up on every call); SCORE_POOL_WORKERS wide so that many items in flight each get theirs."""
    with _SCORE_POOL_LOCK:
        if not _SCORE_POOL:
            _SCORE_POOL.append(ThreadPoolExecutor(max_workers=SCORE_POOL_WORKERS, thread_name_prefix="score"))
        return _SCORE_POOL[0]


def _each(work, endpoints: list) -> None:
    """`work(ep)` for every endpoint, all at once (replicas are probed side by side, not one after
    another); the first error in endpoint order is raised."""
    if len(endpoints) <= 1:
        for ep in endpoints:
            work(ep)
        return
    with ThreadPoolExecutor(max_workers=len(endpoints)) as ex:
        for future in [ex.submit(work, ep) for ep in endpoints]:
            future.result()


def _why_refused(exc: BadServerReply, withheld: bool, base: str) -> BadServerReply:
    """A 401/403 from a server the API key was kept from says so (setting the key would not help)."""
    if not withheld or exc.status not in (401, 403):
        return exc
    return BadServerReply(
        f"the server at {base} refused the request (HTTP {exc.status}) and the API key was not sent to it: "
        "the key goes only to servers named when the app started; start the app with this server's URL "
        "in --model or in an --allow-model pattern with no wildcard in its host:port", exc.status)
