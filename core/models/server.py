"""OpenAI-compatible server backend of the LM protocol (`core.models.lm`): vLLM and friends.

Run a model on a GPU machine with vLLM, then point Palimpsest at it:

    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000 --max-model-len 16384
    palimpsest ... --model http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct

Spec syntax: `http(s)://host:port/v1#model-name`, optionally prefixed with `openai:`. Without
`#model-name` the first model listed by GET {base}/models is used. A bare `http://host:port`
gets `/v1` appended. The API key, if any, comes from $PALIMPSEST_API_KEY, else $OPENAI_API_KEY
(sent as a Bearer header). It goes only where it was meant to go: `from_spec(key_hosts=...)`
names the (host, port) pairs that may receive it (the studio passes the hosts its starter named;
a server elsewhere is still called, without the key), and the header is never carried over a
redirect (urllib's unredirected header), so a server cannot bounce the key to another address.
The request timeout is $PALIMPSEST_SERVER_TIMEOUT seconds (default
300) or the `timeout` argument; a connection reset is retried once.

Knows:
- `generate`: POST {base}/chat/completions; the server applies the chat template and sampling.
- `loglikelihood`: POST {base}/completions with `echo`, `logprobs=0`, `max_tokens=1` on the
  joined text (context pieces + continuation); the server tokenizes the whole text, so the
  continuation's tokens are picked by character offset. A token that straddles the
  context/continuation boundary counts as continuation (its span overlaps the continuation).
  Offsets are right-aligned to the echoed text first, so a BOS token that the server lists with
  text (vLLM lists e.g. "<s>" and counts its characters) does not shift the boundary.
  `precision` is ignored: the server computes in whatever dtype it was started with.
  Nothing is left-truncated here: a text that does not fit raises ContextTooLong whatever
  `truncate` says (`truncated` is always 0); restart the server with a larger --max-model-len.
- `chat_text`: vLLM's POST {root}/tokenize (messages -> template token ids) and {root}/detokenize
  (ids -> text), at the server root, not under /v1; results are cached per messages.
- `max_length`: the /models entry's `max_model_len` (vLLM reports it), else 4096.
- `count_tokens`: vLLM's POST {root}/tokenize with a plain prompt (no special tokens); a server
  without that endpoint falls back to a local tokenizer when one is known (the `tokenizer`
  argument, else the served model's name when it is a local folder or a hub id in the local
  cache), and otherwise raises LMError saying what to do. Never a word count.
- `generate`'s finish reasons come from each choice's `finish_reason` ("stop", "length", ...).

Does not know: tokenizing context pieces one by one (servers tokenize the joined text, so shared
prefixes are cached by the server's own prefix cache, not by us), local models, REER templates.
Standard library only (urllib + json); `transformers` only for the local-tokenizer fallback.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from core.models.lm import (
    FINISH_STOP,
    ContextTooLong,
    Generation,
    GenerationConfig,
    LMError,
    ModelNotFound,
    Precision,
    ScoreRequest,
    TokenLogprobs,
    cut_at_stop,
    number_from_env,
    server_host,
    stop_reason,
    wait_unless_stopped,
)

log = logging.getLogger(__name__)

VLLM_COMMAND = "vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000 --max-model-len 16384"
VLLM_SPEC = "http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct"  # the spec matching VLLM_COMMAND

DEFAULT_MAX_LENGTH = 4096  # when /models does not say
DEFAULT_TIMEOUT_S = 300.0  # one request; long generations and long texts take a while
METADATA_TIMEOUT_S = 30.0  # upper bound for /models at load time
TIMEOUT_ENV = "PALIMPSEST_SERVER_TIMEOUT"
API_KEY_ENVS = ("PALIMPSEST_API_KEY", "OPENAI_API_KEY")  # first one set wins
SCORE_WORKERS = 8  # concurrent /completions requests while scoring
CHAT_CACHE_SIZE = 1024  # rendered chats kept per model

_RESET_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
_CONTEXT_RE = re.compile(r"maximum context length|maximum model length|longer than the maximum", re.I)
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class ServerUnreachable(LMError):
    """The server could not be reached, or did not answer in time."""


class BadServerReply(LMError):
    """The server answered, but with an HTTP error or something that is not the expected JSON."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# ---- spec and settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    base: str  # the OpenAI API base, e.g. http://localhost:8000/v1
    root: str  # the server root (base without /v1), where vLLM's /tokenize lives
    model: str | None  # the model id after '#', None to take the first one /models lists


def parse_spec(spec: str) -> ServerSpec:
    """Split `[openai:]http(s)://host:port/v1[#model]` into base URL, server root and model."""
    url = spec.strip()
    if url.startswith("openai:"):
        url = url[len("openai:"):].strip()
    url, _, model = url.partition("#")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelNotFound(
            f"model '{spec}': not a server URL. Use http://host:port/v1#model-name, e.g. {VLLM_SPEC}"
        )
    path = parts.path.rstrip("/") or "/v1"
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    root_path = path[: -len("/v1")] if path.endswith("/v1") else path
    root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, root_path, "", ""))
    return ServerSpec(base=base, root=root, model=model.strip() or None)


def api_key_from_env() -> str | None:
    """The API key: $PALIMPSEST_API_KEY, else $OPENAI_API_KEY, else None."""
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def timeout_from_env() -> float:
    """Seconds per request: $PALIMPSEST_SERVER_TIMEOUT, else DEFAULT_TIMEOUT_S."""
    return number_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, unit="seconds", example="300")


# ---- HTTP -------------------------------------------------------------------------------------


def _opener(url: str) -> urllib.request.OpenerDirector:
    """Loopback servers are reached directly, never through an environment proxy."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in _LOOPBACK or host.startswith("127."):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def error_text(body: bytes) -> str:
    """The human message inside an error reply (vLLM: {"message"} or {"error": {"message"}})."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if data.get("message"):
            return str(data["message"])
        if data.get("detail"):
            return str(data["detail"])
    return text[:300]


def _http_error(url: str, status: int, message: str) -> LMError:
    """Turn an HTTP error reply into the LMError a user can act on."""
    if _CONTEXT_RE.search(message):
        return ContextTooLong(
            f"the server at {url} says the text does not fit its context window: {message} "
            "Shorten the input, or restart the server with a larger --max-model-len."
        )
    if status in (401, 403):
        return BadServerReply(
            f"the server at {url} refused the request (HTTP {status}: {message}); "
            f"set {API_KEY_ENVS[0]} or {API_KEY_ENVS[1]} to its API key",
            status,
        )
    return BadServerReply(f"the server at {url} answered HTTP {status}: {message}", status)


def _unreachable(url: str, reason: object, timeout: float) -> ServerUnreachable:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return ServerUnreachable(
            f"no answer from the server at {url} within {timeout:g} s; it may be busy or the request "
            f"too large. Raise the limit with {TIMEOUT_ENV}=<seconds>."
        )
    return ServerUnreachable(
        f"cannot reach the model server at {url} ({reason}). Is the server running? "
        f"Start it with, e.g.: {VLLM_COMMAND}"
    )


def request_json(url: str, body: dict | None = None, *, timeout: float, api_key: str | None = None) -> Any:
    """GET (body None) or POST JSON to `url` and return the decoded JSON reply.

    One retry on a connection reset; every failure becomes an LMError naming the URL. The
    `api_key` goes to `url` only, never to where it redirects.
    """
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    for attempt in (1, 2):
        req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
        if api_key:  # unredirected: a redirect to any address goes there without the key
            req.add_unredirected_header("Authorization", f"Bearer {api_key}")
        try:
            with _opener(url).open(req, timeout=timeout) as resp:
                raw = resp.read()
            break
        except urllib.error.HTTPError as exc:
            raise _http_error(url, exc.code, error_text(exc.read() or b"")) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, _RESET_ERRORS) and attempt == 1:
                log.info("connection to %s was reset; retrying once", url)
                continue
            raise _unreachable(url, exc.reason, timeout) from None
        except _RESET_ERRORS as exc:
            if attempt == 1:
                log.info("connection to %s was reset; retrying once", url)
                continue
            raise _unreachable(url, exc, timeout) from None
        except (TimeoutError, OSError) as exc:
            raise _unreachable(url, exc, timeout) from None
        except http.client.HTTPException as exc:
            raise BadServerReply(f"the server at {url} broke the HTTP exchange ({exc!r}); is it an HTTP server?") from None
    try:
        return json.loads(raw)
    except ValueError:
        snippet = raw[:200].decode("utf-8", "replace")
        raise BadServerReply(
            f"the server at {url} sent a reply that is not JSON ({snippet!r}); is it an "
            "OpenAI-compatible server, and does the spec's URL end in /v1?"
        ) from None


def _field(reply: Any, url: str, *keys: str | int) -> Any:
    """reply[k1][k2]...; a missing or ill-typed field becomes BadServerReply naming the URL."""
    node = reply
    for key in keys:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            path = "".join(f"[{k!r}]" for k in keys)
            raise BadServerReply(f"the server at {url} sent a reply without {path}: {str(reply)[:200]}") from None
    return node


# ---- pure helpers -----------------------------------------------------------------------------


def pick_continuation(
    tokens: Sequence[str],
    logprobs: Sequence[float | None],
    offsets: Sequence[int],
    context_len: int,
    text_len: int,
    prompt_tokens: int | None = None,
) -> tuple[list[str], list[float | None], int]:
    """The continuation's tokens and log-probs, and the number of prompt tokens before it.

    `tokens`/`logprobs`/`offsets` are the echoed prompt plus generated token(s). The prompt is
    the first `prompt_tokens` entries (from the reply's usage) or else the entries whose offset
    is below `text_len`. Offsets are shifted so the prompt ends exactly at `text_len` (undoing a
    BOS token's text); then a prompt token belongs to the continuation when its span ends past
    `context_len`, so a token straddling the boundary is continuation.
    """
    if prompt_tokens is None or not 0 < prompt_tokens <= len(tokens):
        prompt_tokens = sum(1 for off in offsets if off < text_len)
    if prompt_tokens == 0:
        return [], [], 0
    if prompt_tokens < len(tokens):
        end = offsets[prompt_tokens]
    else:
        end = offsets[prompt_tokens - 1] + len(tokens[prompt_tokens - 1])
    shift = end - text_len
    first = prompt_tokens
    for i in range(prompt_tokens):
        if offsets[i] - shift + len(tokens[i]) > context_len:
            first = i
            break
    return list(tokens[first:prompt_tokens]), list(logprobs[first:prompt_tokens]), first


# ---- the backend ------------------------------------------------------------------------------


class OpenAILM:
    """A model behind an OpenAI-compatible server; one instance per spec."""

    def __init__(
        self,
        spec: ServerSpec,
        model: str,
        *,
        name: str,
        max_length: int = DEFAULT_MAX_LENGTH,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        tokenizer: str | None = None,
        key_withheld: bool = False,
    ):
        self.key_withheld = key_withheld  # a key is set, but this server's host may not receive it
        self.has_fast_path = False  # the server computes in its own dtype: no bf16 twin here
        self.tokenizer_name = tokenizer or model  # where count_tokens looks when /tokenize is missing
        self._tokenize_missing = False  # the server answered /tokenize with 404/405 once
        self._local_tokenizer = None  # loaded on first need (count_tokens fallback)
        self.base = spec.base
        self.root = spec.root
        self.model = model
        self.name = name
        self.max_length = max_length
        self.timeout = timeout
        self.api_key = api_key
        self._chat_cache: OrderedDict[str, str] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str, timeout: float | None = None, tokenizer: str | None = None,
                  key_hosts: frozenset | None = None) -> "OpenAILM":
        """Connect to the server named by `spec`, pick the model and read its window size.
        `tokenizer`: a local tokenizer folder or cached hub id for counting tokens when the
        server has no /tokenize (default: the served model's name). `key_hosts`: the (host, port)
        pairs (core.models.lm.server_host) the API key may go to; a server elsewhere is called
        without it. None: the key goes to this spec's server (its user typed the spec)."""
        parsed = parse_spec(spec)
        timeout = timeout or timeout_from_env()
        key = api_key_from_env()
        withheld = bool(key) and key_hosts is not None and server_host(parsed.base) not in key_hosts
        if withheld:
            log.warning("not sending the API key to %s: its host was not named when the app started", parsed.base)
            key = None
        try:
            models = list_models(parsed.base, timeout=min(timeout, METADATA_TIMEOUT_S), api_key=key)
        except BadServerReply as exc:
            raise _why_refused(exc, withheld, parsed.base) from None
        entry = choose_model(spec, parsed, models)
        model = parsed.model or entry["id"]
        max_len = entry.get("max_model_len") if entry else None
        max_length = int(max_len) if isinstance(max_len, int) and max_len > 0 else DEFAULT_MAX_LENGTH
        return cls(parsed, model, name=spec.strip(), max_length=max_length, timeout=timeout, api_key=key,
                   tokenizer=tokenizer, key_withheld=withheld)

    def _post(self, url: str, body: dict) -> Any:
        try:
            return request_json(url, body, timeout=self.timeout, api_key=self.api_key)
        except BadServerReply as exc:
            raise _why_refused(exc, self.key_withheld, self.base) from None

    # ---- protocol -----------------------------------------------------------------------------

    def generate(self, messages: Sequence[dict], config: GenerationConfig, prefix: str = "") -> list[Generation]:
        """`config.n` replies from {base}/chat/completions, in choice order, cut at stop strings.

        A `prefix` is sent as a final assistant message with vLLM's `continue_final_message`
        (and `add_generation_prompt: false`), so the reply continues it.
        """
        messages = list(messages)
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "n": config.n,
        }
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        if prefix:
            body.update(continue_final_message=True, add_generation_prompt=False)
        body.update(config.extra)
        url = f"{self.base}/chat/completions"
        # a run's Stop (core.models.lm.stop_when) ends the wait for the reply, not just the next call
        choices = _field(wait_unless_stopped(lambda: self._post(url, body)), url, "choices")
        if not isinstance(choices, list) or len(choices) != config.n:
            raise BadServerReply(f"the server at {url} sent {len(choices) if isinstance(choices, list) else 0} "
                                 f"choices for n={config.n}")
        ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        out = []
        for c in ordered:
            text = _field(c, url, "message", "content") or ""
            reason = c.get("finish_reason") if isinstance(c, dict) else None
            out.append(Generation(cut_at_stop(text, config.stop),
                                  stop_reason(text, config.stop, str(reason) if reason else FINISH_STOP)))
        return out

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's /tokenize (vLLM), else by a local tokenizer (see the
        module docstring); LMError when neither is there."""
        if not text:
            return 0
        if not self._tokenize_missing:
            url = f"{self.root}/tokenize"
            try:
                reply = self._post(url, {"model": self.model, "prompt": text, "add_special_tokens": False})
            except BadServerReply as exc:
                if exc.status not in (404, 405):
                    raise
                self._tokenize_missing = True
            else:
                count = reply.get("count") if isinstance(reply, dict) else None
                return int(count) if isinstance(count, int) else len(_field(reply, url, "tokens"))
        return len(self._tokenizer()(text, add_special_tokens=False)["input_ids"])

    def _tokenizer(self):
        """The local tokenizer named by `tokenizer_name` (local files only), loaded once."""
        if self._local_tokenizer is None:
            try:
                from transformers import AutoTokenizer

                self._local_tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name, local_files_only=True)
            except (ImportError, OSError, ValueError) as exc:
                raise LMError(
                    f"cannot count tokens for {self.name}: the server at {self.root} has no /tokenize endpoint "
                    f"and no local tokenizer named {self.tokenizer_name!r} was found ({str(exc).splitlines()[0][:120]}). "
                    "Use a vLLM server, or pass a local tokenizer folder (OpenAILM.from_spec(spec, tokenizer=DIR))."
                ) from None
        return self._local_tokenizer

    def chat_text(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The server's chat-template rendering, via vLLM's /tokenize then /detokenize (cached)."""
        key = json.dumps([list(messages), add_generation_prompt], sort_keys=True, ensure_ascii=False)
        with self._cache_lock:
            if key in self._chat_cache:
                self._chat_cache.move_to_end(key)
                return self._chat_cache[key]
        text = self._render_chat(list(messages), add_generation_prompt)
        with self._cache_lock:
            self._chat_cache[key] = text
            while len(self._chat_cache) > CHAT_CACHE_SIZE:
                self._chat_cache.popitem(last=False)
        return text

    def _render_chat(self, messages: list[dict], add_generation_prompt: bool) -> str:
        tok_url, detok_url = f"{self.root}/tokenize", f"{self.root}/detokenize"
        try:
            body = {"model": self.model, "messages": messages, "add_generation_prompt": add_generation_prompt}
            ids = _field(self._post(tok_url, body), tok_url, "tokens")
            return str(_field(self._post(detok_url, {"model": self.model, "tokens": ids}), detok_url, "prompt"))
        except BadServerReply as exc:
            if exc.status in (404, 405):
                raise LMError(
                    f"scoring with the chat template against {self.root} needs vLLM's /tokenize and "
                    f"/detokenize endpoints, which this server does not have ({exc}). Use a vLLM server, "
                    "or score with template 'none'."
                ) from None
            raise

    def loglikelihood(
        self,
        requests: Sequence[ScoreRequest],
        precision: Precision = "fp32",
        truncate: Literal["error", "left"] = "error",
    ) -> list[TokenLogprobs]:
        """Continuation log-probs from {base}/completions (echo), up to 8 requests at a time.

        `precision` is ignored (the server's dtype rules) and nothing is truncated: a text too
        long for the server raises ContextTooLong whatever `truncate` says.
        """
        for req in requests:
            if not req.continuation:
                raise LMError("scoring request with an empty continuation: nothing to score")
        if len(requests) <= 1:
            return [self._score_one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(SCORE_WORKERS, len(requests))) as pool:
            return list(pool.map(self._score_one, requests))

    def _score_one(self, req: ScoreRequest) -> TokenLogprobs:
        context = "".join(req.context)
        text = context + req.continuation
        url = f"{self.base}/completions"
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "echo": True, "logprobs": 0, "temperature": 0}
        reply = self._post(url, body)
        lp = _field(reply, url, "choices", 0, "logprobs")
        tokens = _field(lp, url, "tokens")
        logprobs = _field(lp, url, "token_logprobs")
        offsets = _field(lp, url, "text_offset")
        if not (isinstance(tokens, list) and len(tokens) == len(logprobs) == len(offsets)):
            raise BadServerReply(f"the server at {url} sent logprobs lists of different lengths")
        usage = reply.get("usage") if isinstance(reply, dict) else None
        n_prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        cont, cont_lps, n_ctx = pick_continuation(
            tokens, logprobs, offsets, len(context), len(text), n_prompt if isinstance(n_prompt, int) else None
        )
        if not cont:
            raise BadServerReply(f"the server at {url} echoed no tokens for the continuation {req.continuation[:40]!r}")
        if any(v is None for v in cont_lps):
            raise LMError(
                f"the continuation {req.continuation[:40]!r} starts at the first token, which the server at "
                f"{url} gives no log-prob for; give the request a non-empty context"
            )
        return TokenLogprobs([str(t) for t in cont], [float(v) for v in cont_lps], context_tokens=n_ctx, truncated=0)


def _why_refused(exc: BadServerReply, withheld: bool, base: str) -> BadServerReply:
    """A 401/403 from a server the API key was kept from says so (setting the key would not help)."""
    if not withheld or exc.status not in (401, 403):
        return exc
    return BadServerReply(
        f"the server at {base} refused the request (HTTP {exc.status}) and the API key was not sent to it: "
        "the key goes only to servers named when the app started; start the app with this server's URL "
        "in --model or in an --allow-model pattern with no wildcard in its host:port", exc.status)


def list_models(base: str, *, timeout: float, api_key: str | None = None) -> list[dict]:
    """The entries of GET {base}/models; [] when the server has no such endpoint (404)."""
    url = f"{base}/models"
    try:
        reply = request_json(url, timeout=timeout, api_key=api_key)
    except BadServerReply as exc:
        if exc.status == 404:
            return []
        raise
    data = _field(reply, url, "data")
    return [m for m in data if isinstance(m, dict) and m.get("id")] if isinstance(data, list) else []


def choose_model(spec: str, parsed: ServerSpec, models: list[dict]) -> dict:
    """The /models entry for the spec's model (or the first one); {} when the name is unlisted but
    the server lists nothing. Raises ModelNotFound naming what the server offers."""
    offered = ", ".join(m["id"] for m in models) or "none"
    if parsed.model is None:
        if not models:
            raise ModelNotFound(
                f"model '{spec}': the server at {parsed.base} lists no models; name one: {parsed.base}#model-name"
            )
        return models[0]
    for entry in models:
        if entry["id"] == parsed.model:
            return entry
    if models:
        raise ModelNotFound(
            f"model '{spec}': the server at {parsed.base} does not serve '{parsed.model}' (it offers: {offered}); "
            f"use {parsed.base}#<one of those>"
        )
    return {}
