"""A latency stand-in for a vLLM server: a real HTTP server on 127.0.0.1 that answers vLLM's
OpenAI-compatible wire format after a fixed per-request delay, so that how Palimpsest scales with
requests in flight can be seen (and tested) beyond what two CPU cores compute.

It is no model. It is the protocol double tests/core/models/test_lm_openai.py runs against (vLLM's routes,
replies and error shapes, and test modes that mimic other servers), a module so that test, the
batch tests and `palimpsest bench serve` (core.bench_serve) share it, with:
- `delay`: seconds slept before answering each /v1/chat/completions and /v1/completions request
  (a GPU's time per request; /v1/models, /tokenize and /detokenize answer at once, as on vLLM);
- a `brain`: "words" (the double's own answers: text "reply {i} seed=..", a word tokenizer and
  log-probs derived from characters) or "scripted" (answers and log-probs from the scripted fake
  model, core.models.scripted: planning prose, rewrites, readable judgments), so REER and R2
  run whole items through it;
- vLLM's `prompt_logprobs` beside `echo` + `logprobs` in /v1/completions, and a raw-prompt
  /v1/completions without echo (generation from a client-rendered ChatML prompt);
- counters at GET /standin/stats: requests per route, the most requests in flight at once, and
  the server process's CPU seconds so far.

Routes: GET /v1/models (with `max_model_len`), POST /v1/chat/completions (`n` choices,
`continue_final_message` continues the last assistant message), POST /v1/completions, POST
/tokenize (a plain `prompt` counted in the brain's tokens; `messages` rendered as ChatML, ids =
code points) and POST /detokenize (code points back to text), as vLLM has them at the server root;
POST /extras/tokenize in mode "llama".
Test modes (`state.mode`): "bos" (a "<s>" token listed first in echoed log-probs), "drop_specials"
(llama-cpp-python under a ChatML prompt: special tokens are tokens of their own, every `<|im_start|>`
is left out of the echoed log-probs and every other special listed as an empty string, while usage
counts them all plus a BOS), "garbage" (a
non-JSON reply), "no_tokenize", "slow" (1.5 s on every route), "no_models", "ignore_n" (one choice
whatever `n`), "llama" (like llama-cpp-python: no window in /v1/models, no /tokenize or /detokenize
but /extras/tokenize with the BOS it adds, `n` ignored, a BOS counted in usage but not listed),
"shifted" (echoed log-probs shifted by one position, as llama-cpp-python's on a model that adds
no BOS: number words score -9); `state.resets_left` drops that many connections without an answer.
A misbehaving server (tests/core/models/test_hostile_server.py): `state.poison` replaces every echoed log-prob
of a prompt other than the alignment probe's (which begins "Count with me", so the server loads)
with that value, sent as JSON: NaN, -Infinity, 5.0 or the string "-0.5"; `state.huge_mb` pads
every /v1/completions reply with that many MB of valid JSON, streamed without a Content-Length; `state.trickle_s` sends every
/v1/completions reply one byte per that many seconds.

Start one in this process (`serve(...)`, a context manager, threads) or as a process of its own:
`python -m core.serve_standin --delay 0.2 --brain scripted [--port P]` prints `URL <base>` on
its first line and serves until killed (core.bench_serve starts it so, so that the driver's own
CPU is measured apart from the server's).
Does not know: Palimpsest's engines, nor any real tokenizer or model.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

MODEL = "standin/Model-1B"  # the model id the stand-in serves by default
MAX_MODEL_LEN = 8192  # its window in tokens by default
SLOW_S = 1.5  # what mode "slow" sleeps on every route
Brain = Literal["words", "scripted"]

_SPECIAL = re.compile(r"(<\|im_(?:start|end)\|>)")
_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>\n?|\Z)", re.S)


def fake_tokens(text: str) -> list[str]:
    """The "words" brain's tokenizer: words with their leading whitespace; trailing whitespace alone."""
    toks = re.findall(r"\s*\S+", text)
    rest = text[len("".join(toks)):]
    return toks + ([rest] if rest else [])


NUMBER_WORDS = frozenset(("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                          "sixteen seventeen eighteen nineteen twenty").split())


def fake_logprob(token: str) -> float:
    """The "words" brain's log-prob of a token: fixed, from its characters; number words are
    near-certain, as for any working model (the alignment check at load counts to twenty)."""
    if token.strip(" ,.") in NUMBER_WORDS:
        return -0.05
    return -round((sum(ord(c) for c in token) % 97) / 10 + 0.1, 4)


def render_chat(messages: list[dict], add_generation_prompt: bool) -> str:
    """ChatML, the template both brains render."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def parse_chat(prompt: str) -> tuple[list[dict], str]:
    """(messages, assistant prefill) of a ChatML prompt; a prompt that is not ChatML is one user message."""
    found = list(_CHATML.finditer(prompt))
    if not found:
        return [{"role": "user", "content": prompt}], ""
    messages = [{"role": m.group(1), "content": m.group(2)} for m in found]
    prefix = ""
    if messages[-1]["role"] == "assistant" and not found[-1].group(0).endswith(("<|im_end|>", "<|im_end|>\n")):
        prefix = messages.pop()["content"]
    return messages, prefix


def _drop_specials(text: str, tokens) -> tuple[list[str], list, int]:
    """What llama-cpp-python echoes for a ChatML prompt (mode "drop_specials"): the listed tokens and
    log-probs without any `<|im_start|>` (its BOS id) and with other specials as empty strings, and
    the prompt tokens its usage counts (all of them, plus the BOS it adds)."""
    every: list[str] = []
    for piece in _SPECIAL.split(text):
        every += [piece] if _SPECIAL.fullmatch(piece) else tokens(piece) if piece else []
    listed = [("" if _SPECIAL.fullmatch(t) else t) for t in every if t != "<|im_start|>"]
    return listed, [None] + [fake_logprob(t) for t in listed[1:]], len(every) + 1


def token_id(token: str) -> int:
    """A stable id for a token string (for vLLM's prompt_logprobs shape)."""
    return zlib.crc32(token.encode("utf-8")) % 50_000


@dataclass
class State:
    """What the tests and the bench steer and read; shared by every request thread (guard with `lock`)."""

    model: str = MODEL  # the id served
    max_model_len: int = MAX_MODEL_LEN  # reported by /v1/models and enforced by /v1/completions
    extra_models: tuple = ()  # more ids /v1/models lists, without max_model_len
    delay: float = 0.0  # seconds before each (chat) completion answer
    brain: Brain = "words"  # who writes the answers (module docstring)
    keep_bodies: bool = True  # record request bodies and headers (tests); off for long benches
    mode: set = field(default_factory=set)  # test modes (module docstring)
    resets_left: int = 0  # drop this many connections without answering
    poison: object = None  # a value put in place of echoed log-probs (module docstring); None: honest ones
    huge_mb: float = 0.0  # MB of JSON padding added to each /v1/completions reply
    trickle_s: float = 0.0  # seconds between the bytes of each /v1/completions reply; 0: all at once
    bodies: list = field(default_factory=list)  # (path, body) of each POST, when keep_bodies
    headers: list = field(default_factory=list)  # headers of each request, when keep_bodies
    requests: dict = field(default_factory=dict)  # path -> requests answered or refused
    in_flight: int = 0  # requests being answered now
    max_in_flight: int = 0  # the most at once since the last reset
    lock: threading.Lock = field(default_factory=threading.Lock)
    _scripted: object = None  # the scripted model, made on first need

    def reset(self) -> None:
        """Back to a clean state (modes, counters, logs); model, window, delay and brain stay."""
        with self.lock:
            self.mode, self.resets_left = set(), 0
            self.poison, self.huge_mb, self.trickle_s = None, 0.0, 0.0
            self.bodies, self.headers, self.requests = [], [], {}
            self.max_in_flight = self.in_flight

    def stats(self) -> dict:
        with self.lock:
            return {"requests": dict(self.requests), "total": sum(self.requests.values()),
                    "in_flight": self.in_flight, "max_in_flight": self.max_in_flight, "delay": self.delay,
                    "brain": self.brain, "model": self.model, "cpu_s": time.process_time()}

    def scripted(self):
        with self.lock:
            if self._scripted is None:
                from core.models.scripted import ScriptedLM

                self._scripted = ScriptedLM(judge=7, max_length=self.max_model_len, name="standin")
            return self._scripted


class Handler(BaseHTTPRequestHandler):
    """vLLM's routes (module docstring); `state` is set on the subclass `make_server` builds."""

    state: State
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's server

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, payload, trickle_s: float = 0.0) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        try:
            if trickle_s <= 0:
                self.wfile.write(raw)
                return
            for i in range(len(raw)):  # a reply that never stops coming, one byte at a time
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
                time.sleep(trickle_s)
        except OSError:
            pass

    def _error(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        self._send(status, {"object": "error", "message": message, "type": kind, "param": None, "code": status})

    def _intercept(self) -> bool:
        st = self.state
        with st.lock:
            if st.keep_bodies:
                st.headers.append(dict(self.headers))
            if st.resets_left > 0:
                st.resets_left -= 1
                self.close_connection = True
                return True  # close without a response: the client sees RemoteDisconnected
        if "slow" in st.mode:
            time.sleep(SLOW_S)
        if "garbage" in st.mode:
            self._send(200, b"<html>502 Bad Gateway</html>")
            return True
        return False

    def _count(self, path: str, step: int) -> None:
        with self.state.lock:
            if step > 0:
                self.state.requests[path] = self.state.requests.get(path, 0) + 1
            self.state.in_flight += step
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)

    def do_GET(self):
        self._count(self.path, 1)
        try:
            if self._intercept():
                return
            st = self.state
            if self.path == "/v1/models" and "no_models" not in st.mode:
                window = {} if "llama" in st.mode else {"max_model_len": st.max_model_len}
                self._send(200, {"object": "list", "data": [
                    {"id": st.model, "object": "model", "owned_by": "vllm", "root": st.model, **window},
                    *({"id": m, "object": "model", "owned_by": "vllm", "root": m} for m in st.extra_models)]})
            elif self.path == "/standin/stats":
                self._send(200, st.stats())
            else:
                self._error(404, "Not Found", "NotFoundError")
        finally:
            self._count(self.path, -1)

    def do_POST(self):
        self._count(self.path, 1)
        try:
            self._post()
        finally:
            self._count(self.path, -1)

    def _post(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self._intercept():
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(400, "the body is not JSON")
        st = self.state
        if st.keep_bodies:
            with st.lock:
                st.bodies.append((self.path, body))
        if body.get("model") not in (st.model, *st.extra_models):
            return self._error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        route = {
            "/v1/chat/completions": self.chat,
            "/v1/completions": self.completions,
            "/tokenize": self.tokenize,
            "/detokenize": self.detokenize,
            "/extras/tokenize": self.extras_tokenize,
        }.get(self.path)
        if route is None or (self.path in ("/tokenize", "/detokenize") and st.mode & {"no_tokenize", "llama"}) or (
                self.path == "/extras/tokenize" and "llama" not in st.mode):
            return self._error(404, "Not Found", "NotFoundError")
        if self.path.startswith("/v1/") and st.delay > 0:
            time.sleep(st.delay)  # the GPU's time for this request
        route(body)

    # ---- routes -------------------------------------------------------------------------------

    def _tokens(self, text: str) -> list[str]:
        if self.state.brain == "scripted":
            from core.models.scripted import tokenize

            return tokenize(text)
        return fake_tokens(text)

    def _texts(self, messages: list[dict], prefix: str, body: dict, n: int) -> list[tuple[str, str]]:
        """n (text, finish reason) answers to a chat."""
        if self.state.brain == "words":
            # like some servers, the words brain ignores `stop`: the client must cut
            return [(f"reply {i} seed={body.get('seed')}\nSTOP tail", "length") for i in range(n)]
        from core.models.lm import GenerationConfig

        lm = self.state.scripted()
        cfg = GenerationConfig(max_new_tokens=int(body.get("max_tokens") or 256),
                               temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)),
                               n=n, stop=tuple(body.get("stop") or ()), seed=body.get("seed"))
        out = lm.generate(messages, cfg, prefix=prefix)
        with self.state.lock:
            if len(lm.calls) > 256:  # a long bench: the call log is of no use here
                del lm.calls[:]
        return [(str(g), g.finish_reason) for g in out]

    def _n(self, body: dict) -> int:
        return 1 if self.state.mode & {"ignore_n", "llama"} else int(body.get("n", 1))

    def chat(self, body):
        n = self._n(body)
        messages = list(body.get("messages") or [])
        prefix = ""
        if body.get("continue_final_message") and messages and messages[-1].get("role") == "assistant":
            prefix = str(messages.pop()["content"])
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                   for i, (text, reason) in enumerate(self._texts(messages, prefix, body, n))]
        self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                         "choices": list(reversed(choices))})  # out of order on purpose

    def _prompt_logprobs(self, toks: list[str]) -> list:
        if self.state.brain == "words" or len(toks) < 2:
            return [None] + [fake_logprob(t) for t in toks[1:]]
        from core.models.lm import ScoreRequest

        got = self.state.scripted().loglikelihood([ScoreRequest((toks[0],), "".join(toks[1:]))])[0]
        if len(got.logprobs) != len(toks) - 1:  # tokenized apart differently: fall back, still deterministic
            return [None] + [fake_logprob(t) for t in toks[1:]]
        return [None] + list(got.logprobs)

    def completions(self, body):
        st = self.state
        text = str(body.get("prompt", ""))
        toks = self._tokens(text)
        max_tokens = int(body.get("max_tokens", 16))
        if len(toks) + max_tokens > st.max_model_len:
            return self._error(400, (
                f"This model's maximum context length is {st.max_model_len} tokens. However, you requested "
                f"{len(toks) + max_tokens} tokens ({len(toks)} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion."))
        if not body.get("echo") and body.get("prompt_logprobs") is None:  # plain generation from a raw prompt
            messages, prefix = parse_chat(text)
            n = self._n(body)
            choices = [{"index": i, "text": t, "finish_reason": r, "logprobs": None}
                       for i, (t, r) in enumerate(self._texts(messages, prefix, body, n))]
            return self._send(200, {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                                    "choices": choices})
        lps = self._prompt_logprobs(toks)
        if "shifted" in st.mode:  # each token scored as if it came again after itself: no model expects
            lps = [lps[0]] + [-9.0 if t.strip(" ,.") in NUMBER_WORDS else v for t, v in zip(toks[1:], lps[1:])]
        counted = len(toks)
        if "drop_specials" in st.mode:
            toks, lps, counted = _drop_specials(text, self._tokens)
        if "bos" in st.mode:
            toks, lps = ["<s>"] + toks, [None, fake_logprob(toks[0])] + lps[1:]
            counted += 1
        counted += 1 if "llama" in st.mode else 0  # a BOS counted, not listed
        if st.poison is not None and not text.startswith("Count with me"):  # the probe passes: it loads
            lps = [lps[0]] + [st.poison] * (len(lps) - 1)
        gen = " zzz"
        choice: dict = {"index": 0, "text": (text if body.get("echo") else "") + gen, "finish_reason": "length"}
        if body.get("echo"):
            all_toks, all_lps = toks + [gen], lps + [-0.5]
            offsets, pos = [], 0
            for t in all_toks:
                offsets.append(pos)
                pos += len(t)
            choice["logprobs"] = {"tokens": all_toks, "token_logprobs": all_lps, "text_offset": offsets,
                                  "top_logprobs": [None] + [{} for _ in all_toks[1:]]}
        if body.get("prompt_logprobs") is not None:  # vLLM's own form: one dict per prompt token, None first
            choice["prompt_logprobs"] = [None] + [
                {str(token_id(t)): {"logprob": lp, "rank": 1, "decoded_token": t}}
                for t, lp in zip(toks[1:], lps[1:])]
            choice["prompt_token_ids"] = [token_id(t) for t in toks]
        reply = {"id": "cmpl-1", "object": "text_completion", "model": body["model"], "choices": [choice],
                 "usage": {"prompt_tokens": counted, "completion_tokens": 1, "total_tokens": counted + 1}}
        if st.huge_mb:
            return self._send_huge(reply, int(st.huge_mb * 1024 * 1024))
        self._send(200, reply, trickle_s=st.trickle_s)

    def _send_huge(self, reply: dict, pad: int) -> None:
        """`reply` with `pad` bytes of padding first, streamed in 1 MB pieces without a Content-Length
        (the end of the body is the connection's close), so the stand-in never holds it whole."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b'{"padding": "')
            piece = b"x" * (1 << 20)
            for start in range(0, pad, len(piece)):
                self.wfile.write(piece[:pad - start])
            self.wfile.write(b'", ' + json.dumps(reply).encode()[1:])
        except OSError:
            pass

    def tokenize(self, body):
        st = self.state
        if "prompt" in body:  # vLLM's completion form: a plain text, counted in the brain's tokens
            toks = self._tokens(str(body["prompt"]))
            return self._send(200, {"count": len(toks), "max_model_len": st.max_model_len,
                                    "tokens": list(range(len(toks))), "token_strs": None})
        text = render_chat(body["messages"], body.get("add_generation_prompt", True))
        ids = [ord(c) for c in text]
        self._send(200, {"count": len(ids), "max_model_len": st.max_model_len, "tokens": ids, "token_strs": None})

    def extras_tokenize(self, body):  # llama-cpp-python's, with the BOS its override adds
        count = len(self._tokens(str(body.get("input", ""))))
        self._send(200, {"tokens": [1] + list(range(count))})

    def detokenize(self, body):
        self._send(200, {"prompt": "".join(chr(i) for i in body["tokens"])})


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once (the default backlog of 5 refuses them)


@dataclass
class Standin:
    """A running stand-in: `url` is the OpenAI base (…/v1), `spec` the model spec to point Palimpsest at."""

    server: StandinServer
    state: State
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def spec(self) -> str:
        return f"{self.url}#{self.state.model}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_server(state: State, port: int = 0) -> StandinServer:
    """An HTTP server on 127.0.0.1:`port` (0: a free one) answering with `state` (not started)."""
    handler = type("BoundHandler", (Handler,), {"state": state})
    return StandinServer(("127.0.0.1", port), handler)


def start(state: State | None = None, port: int = 0) -> Standin:
    """A stand-in serving from a daemon thread of this process; `close()` it when done."""
    state = state or State()
    srv = make_server(state, port)
    thread = threading.Thread(target=srv.serve_forever, daemon=True, name="standin")
    thread.start()
    return Standin(srv, state, thread)


class serve:
    """`with serve(delay=0.1, brain="scripted") as s:` a stand-in for the block (State's fields as keywords)."""

    def __init__(self, port: int = 0, **state_fields):
        self._port, self._fields = port, state_fields

    def __enter__(self) -> Standin:
        self._standin = start(State(**self._fields), self._port)
        return self._standin

    def __exit__(self, *exc) -> None:
        self._standin.close()


def stats(url: str, timeout: float = 10.0) -> dict:
    """GET {root}/standin/stats of a stand-in at `url` (its …/v1 base or its root)."""
    import urllib.request

    root = url.split("#")[0].rstrip("/").removesuffix("/v1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{root}/standin/stats", timeout=timeout) as resp:
        return json.loads(resp.read())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.serve_standin", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--delay", type=float, default=0.2, help="seconds before each completion answer")
    p.add_argument("--brain", choices=("words", "scripted"), default="scripted", help="who writes the answers")
    p.add_argument("--model", default=MODEL, help="the model id served")
    p.add_argument("--max-model-len", type=int, default=MAX_MODEL_LEN, help="the window in tokens")
    args = p.parse_args(argv)
    state = State(model=args.model, max_model_len=args.max_model_len, delay=args.delay, brain=args.brain,
                  keep_bodies=False)
    srv = make_server(state, args.port)
    print(f"URL http://127.0.0.1:{srv.server_address[1]}/v1", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
