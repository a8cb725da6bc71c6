"""The HTTP side of the server backend (`core.models.server`): one request, and a pool of replicas.

A server spec may name several base URLs serving the same model (`http://a:8000/v1,http://b:8000/v1#m`,
see core.models.server). `EndpointPool` spreads requests over them:
- least in-flight: each request goes to the live endpoint with the fewest requests open (ties:
  the one used least recently), so a slow replica gets less work;
- retries: a connection error, a timeout, HTTP 429 or any 5xx is retried on another endpoint
  where there is one (else the same), after a jittered exponential backoff (full jitter:
  uniform(0, min(cap, base * 2**attempt))), up to $PALIMPSEST_SERVER_RETRIES retries
  (default 4). Other errors (400, 401, 404, a context overflow) are the caller's and raise at once;
- dropping: an endpoint whose last DROP_AFTER requests all failed that way is dropped with one
  warning naming it and the reason; the others carry on. A dropped endpoint gets one trial
  request again after REVIVE_S seconds (a restarted replica comes back; if the trial fails it
  stays dropped). When no endpoint is left the request fails with one line naming each endpoint
  and its last error;
- deadline: $PALIMPSEST_SERVER_TIMEOUT seconds (default 300) for the whole of one try of a request:
  connecting, the reply's headers and its body together, every request alike, metadata included
  (a watchdog shuts the socket when the time is up, so a server that trickles a byte a second is
  cut off at the deadline, not reset by each byte). A request retried (above) gets a fresh deadline
  per try;
- size cap: a reply's body may be at most $PALIMPSEST_SERVER_MAX_REPLY_MB megabytes (default 64,
  docs/serving.md says why): a longer one is refused as soon as it passes the cap (or at once when
  its Content-Length says so), never read whole. Error replies are read up to 64 KB.

The API key per endpoint: $PALIMPSEST_API_KEY_<HOST>_<PORT> (host upper-cased, every character
other than A-Z and 0-9 replaced by `_`: http://gpu-1.lan:8000 reads PALIMPSEST_API_KEY_GPU_1_LAN_8000),
else $PALIMPSEST_API_KEY, else $OPENAI_API_KEY. The key's rule holds per endpoint: when the
caller passes `key_hosts` (the studio: the hosts its starter named), an endpoint whose (host, port)
is not among them is called without a key; the header is never carried over a redirect.

Thread-safe: one pool serves many threads at once (the batch commands keep N items in flight).
Does not know what the requests mean (core.models.server) nor what a server supports
(core.models.dialect). Standard library only.
"""
from __future__ import annotations

import heapq
import http.client
import json
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from core.models.env import number_from_env
from core.models.lm import ContextTooLong, LMError
from core.models.urls import server_host

log = logging.getLogger(__name__)

VLLM_COMMAND = "vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000 --max-model-len 16384"

DEFAULT_TIMEOUT_S = 300.0  # one request, all of it; long generations and long texts take a while
TIMEOUT_ENV = "PALIMPSEST_SERVER_TIMEOUT"
# The largest legitimate reply is a long prompt's echoed log-probs: ~70 bytes a token in the echo
# shape (token, log-prob, offset, top entry), ~155 in vLLM's prompt_logprobs (the token's entry and
# the top one's), docs/serving.md; 64 MB holds a 128k-token prompt at 512 bytes a token (3x the
# larger), and bounds what json.loads makes of it.
DEFAULT_MAX_REPLY_MB = 64.0
MAX_REPLY_ENV = "PALIMPSEST_SERVER_MAX_REPLY_MB"
ERROR_BODY_BYTES = 65536  # how much of an error reply is read for its message
RETRIES_ENV = "PALIMPSEST_SERVER_RETRIES"
DEFAULT_RETRIES = 4  # retries of one request after its first try (429/5xx/connection errors)
BACKOFF_BASE_S = 0.5  # first backoff's upper bound; doubles per retry
BACKOFF_CAP_S = 8.0  # no single wait longer than this
DROP_AFTER = 3  # consecutive retryable failures that drop an endpoint
REVIVE_S = 60.0  # a dropped endpoint gets one trial request after this long
API_KEY_ENVS = ("PALIMPSEST_API_KEY", "OPENAI_API_KEY")  # after the per-endpoint variable; first set wins

_RESET_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
_CONTEXT_RE = re.compile(
    r"maximum context length|maximum model length|longer than the maximum|exceed context window", re.I)
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class ServerUnreachable(LMError):
    """The server could not be reached, or did not answer in time."""


class BadServerReply(LMError):
    """The server answered, but with an HTTP error or something that is not the expected JSON."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def retryable(exc: Exception) -> bool:
    """Errors worth another try elsewhere: no answer, a reset, HTTP 429 or 5xx."""
    if isinstance(exc, ServerUnreachable):
        return True
    return isinstance(exc, BadServerReply) and exc.status is not None and (exc.status == 429 or exc.status >= 500)


# ---- settings from the environment ------------------------------------------------------------


def timeout_from_env() -> float:
    """Seconds per request: $PALIMPSEST_SERVER_TIMEOUT, else DEFAULT_TIMEOUT_S."""
    return number_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, unit="seconds", example="300")


def max_reply_from_env() -> int:
    """Bytes a reply's body may have: $PALIMPSEST_SERVER_MAX_REPLY_MB megabytes, else DEFAULT_MAX_REPLY_MB."""
    mb = number_from_env(MAX_REPLY_ENV, DEFAULT_MAX_REPLY_MB, unit="megabytes", example="64")
    return int(mb * 1024 * 1024)


def retries_from_env() -> int:
    """Retries per request: $PALIMPSEST_SERVER_RETRIES (0 or more), else DEFAULT_RETRIES."""
    raw = os.environ.get(RETRIES_ENV, "").strip()
    if not raw:
        return DEFAULT_RETRIES
    if not raw.isdigit():
        raise LMError(f"{RETRIES_ENV}={raw!r}: give a whole number of retries, 0 or more, e.g. 4")
    return int(raw)


def key_env_name(base: str) -> str:
    """The per-endpoint key variable: PALIMPSEST_API_KEY_<HOST>_<PORT> (module docstring)."""
    host, port = server_host(base) or ("", 0)
    return "PALIMPSEST_API_KEY_" + re.sub(r"[^A-Z0-9]", "_", f"{host}_{port}".upper())


def api_key_from_env(base: str | None = None) -> str | None:
    """The API key for `base`: its own variable, else $PALIMPSEST_API_KEY, else $OPENAI_API_KEY."""
    names = ((key_env_name(base),) if base else ()) + API_KEY_ENVS
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


# ---- one request ------------------------------------------------------------------------------


class _Deadline:
    """One try's deadline: when it passes, the watchdog shuts the try's socket (a blocked read then
    returns), so connecting, headers and body together never take longer."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.finished = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def fire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._sock = None


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """One daemon thread for every deadline of the process (a heap by time), started on first need."""

    def __init__(self):
        self._heap: list = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._n = 0

    def watch(self, dl: _Deadline) -> None:
        with self._cond:
            self._n += 1
            if self._n % 1024 == 0:  # finished tries wait in the heap until their time: drop them now and then
                self._heap = [x for x in self._heap if not x[2].finished]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (dl.at, self._n, dl))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="server-deadlines")
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, dl = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            dl.fire()


_WATCHDOG = _Watchdog()


def _watched(base: type, deadline: _Deadline):
    """A connection class of `base` whose socket is handed to `deadline` as soon as it connects."""
    class Watched(base):
        def connect(self):
            super().connect()
            deadline.attach(self.sock)
    return Watched


class _HTTP(urllib.request.HTTPHandler):
    def http_open(self, req):
        dl = getattr(req, "deadline", None)
        return self.do_open(_watched(http.client.HTTPConnection, dl) if dl else http.client.HTTPConnection, req)


class _HTTPS(urllib.request.HTTPSHandler):
    def https_open(self, req):
        dl = getattr(req, "deadline", None)
        return self.do_open(_watched(http.client.HTTPSConnection, dl) if dl else http.client.HTTPSConnection, req,
                            context=self._context)


_OPENERS: dict[bool, urllib.request.OpenerDirector] = {}  # loopback? -> its opener, built once and shared


def _opener(url: str) -> urllib.request.OpenerDirector:
    """Loopback servers are reached directly, never through an environment proxy. Two openers
    serve every request (their handlers keep no per-request state, as urllib's own urlopen shares
    one); the environment's proxies are read when the first non-loopback request is made."""
    host = urllib.parse.urlsplit(url).hostname or ""
    loopback = host in _LOOPBACK or host.startswith("127.")
    opener = _OPENERS.get(loopback)
    if opener is None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _HTTP, _HTTPS) if loopback else \
            urllib.request.build_opener(_HTTP, _HTTPS)
        _OPENERS[loopback] = opener
    return opener


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
            "Shorten the input, or restart the server with a larger context (vLLM: --max-model-len; "
            "llama.cpp: --n_ctx)."
        )
    if status in (401, 403):
        return BadServerReply(
            f"the server at {url} refused the request (HTTP {status}: {message}); set "
            f"{key_env_name(url)}, {API_KEY_ENVS[0]} or {API_KEY_ENVS[1]} to its API key",
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


def _too_large(url: str, size: str, cap: int) -> BadServerReply:
    return BadServerReply(f"the server at {url} sent a reply of {size} bytes, more than the {cap:,}-byte cap; "
                          f"raise it with {MAX_REPLY_ENV}=<megabytes> if such replies are expected")


def _read_capped(resp, url: str, cap: int) -> bytes:
    """The reply's body, refused (BadServerReply) as soon as it passes `cap` bytes."""
    length = resp.headers.get("Content-Length")
    if length and length.strip().isdigit() and int(length) > cap:
        raise _too_large(url, f"{int(length):,}", cap)
    chunks, total = [], 0
    while True:
        chunk = resp.read(min(1 << 20, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise _too_large(url, f"over {cap:,}", cap)
        chunks.append(chunk)


def request_json(url: str, body: dict | None = None, *, timeout: float, api_key: str | None = None,
                 max_bytes: int | None = None) -> Any:
    """GET (body None) or POST JSON to `url` and return the decoded JSON reply.

    `timeout`: seconds for the whole try (connect, headers, body); `max_bytes`: the largest body
    taken (None: $PALIMPSEST_SERVER_MAX_REPLY_MB). One immediate retry on a connection reset (a
    keep-alive race, not a failure); every failure becomes an LMError naming the URL. The
    `api_key` goes to `url` only, never to where it redirects.
    """
    data = None if body is None else json.dumps(body).encode("utf-8")
    cap = max_reply_from_env() if max_bytes is None else max_bytes
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    for attempt in (1, 2):
        req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
        if api_key:  # unredirected: a redirect to any address goes there without the key
            req.add_unredirected_header("Authorization", f"Bearer {api_key}")
        req.deadline = dl = _Deadline(timeout)
        _WATCHDOG.watch(dl)
        try:
            with _opener(url).open(req, timeout=timeout) as resp:
                raw = _read_capped(resp, url, cap)
            if dl.expired:  # shut mid-body: what came is not the whole reply
                raise TimeoutError("timed out")
            break
        except BadServerReply:
            raise
        except Exception as exc:
            if dl.expired:
                raise ServerUnreachable(
                    f"no complete answer from the server at {url} within {timeout:g} s (the deadline covers "
                    f"connecting, the headers and the whole body); raise it with {TIMEOUT_ENV}=<seconds>") from None
            _raise_request_error(exc, url, timeout, attempt)
        finally:
            dl.finish()
    try:
        return json.loads(raw)
    except ValueError:
        snippet = raw[:200].decode("utf-8", "replace")
        raise BadServerReply(
            f"the server at {url} sent a reply that is not JSON ({snippet!r}); is it an "
            "OpenAI-compatible server, and does the spec's URL end in /v1?"
        ) from None


def _raise_request_error(exc: Exception, url: str, timeout: float, attempt: int) -> None:
    """Raise the LMError for a failed try; return (nothing raised) when it is worth one more try."""
    try:
        raise exc
    except urllib.error.HTTPError as exc:
        raise _http_error(url, exc.code, error_text(exc.read(ERROR_BODY_BYTES) or b"")) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, _RESET_ERRORS) and attempt == 1:
            log.info("connection to %s was reset; retrying once", url)
            return
        raise _unreachable(url, exc.reason, timeout) from None
    except _RESET_ERRORS as exc:
        if attempt == 1:
            log.info("connection to %s was reset; retrying once", url)
            return
        raise _unreachable(url, exc, timeout) from None
    except (TimeoutError, OSError) as exc:
        raise _unreachable(url, exc, timeout) from None
    except http.client.HTTPException as exc:
        raise BadServerReply(f"the server at {url} broke the HTTP exchange ({exc!r}); is it an HTTP server?") from None


# ---- the pool ---------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """One replica: its URLs, its key, and how it has been doing (guarded by the pool's lock)."""

    base: str  # the OpenAI API base, e.g. http://a:8000/v1
    root: str  # the server root (base without /v1), where vLLM's /tokenize lives
    api_key: str | None = None  # sent as a Bearer header to this endpoint only
    key_withheld: bool = False  # a key is set, but this host was not named at start
    in_flight: int = 0  # requests open now
    failures: int = 0  # consecutive retryable failures
    dropped_at: float | None = None  # monotonic time it was dropped; None while in use
    last_error: str = ""  # the last failure, for the all-down message
    last_used: float = 0.0  # monotonic time of the last pick (tie-break)
    requests: int = 0  # requests sent (for records and tests)
    dialect: Any = field(default=None)  # what the server supports (core.models.dialect.Dialect)


class AllEndpointsDown(ServerUnreachable):
    """Every endpoint of a spec failed or was dropped."""


class EndpointPool:
    """Least-in-flight spreading, retries with jittered backoff, dropping (module docstring)."""

    def __init__(self, endpoints: list[Endpoint], *, timeout: float, retries: int = DEFAULT_RETRIES,
                 backoff_s: float = BACKOFF_BASE_S, backoff_cap_s: float = BACKOFF_CAP_S,
                 drop_after: int = DROP_AFTER, revive_s: float = REVIVE_S,
                 clock: Callable[[], float] = time.monotonic):
        if not endpoints:
            raise LMError("a server spec needs at least one URL")
        self.endpoints = endpoints
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.drop_after = drop_after
        self.revive_s = revive_s
        self.clock = clock  # monotonic seconds: when endpoints were dropped and are due a trial (tests set it)
        self._lock = threading.Lock()
        self._rng = random.Random()

    @property
    def live(self) -> list[Endpoint]:
        """Endpoints not dropped now."""
        with self._lock:
            return [e for e in self.endpoints if e.dropped_at is None]

    def _pick(self, avoid: set[int]) -> Endpoint | None:
        """The live endpoint with the fewest requests open, preferring ones this request has not
        tried; a dropped one whose revive time has come counts as live for one trial."""
        now = self.clock()
        with self._lock:
            usable = [e for e in self.endpoints
                      if e.dropped_at is None or now - e.dropped_at >= self.revive_s]
            if not usable:
                return None
            fresh = [e for e in usable if id(e) not in avoid] or usable
            best = min(fresh, key=lambda e: (e.in_flight, e.last_used))
            if best.dropped_at is not None:
                best.dropped_at = now  # one trial per revive period
            best.in_flight += 1
            best.requests += 1
            best.last_used = now
            return best

    def _done(self, ep: Endpoint, error: Exception | None) -> None:
        with self._lock:
            ep.in_flight -= 1
            if error is None:
                if ep.dropped_at is not None:
                    log.warning("endpoint %s answers again; back in use", ep.base)
                ep.failures, ep.dropped_at = 0, None
                return
            ep.failures += 1
            ep.last_error = str(error).split(". ")[0][:160]
            if ep.dropped_at is None and ep.failures >= self.drop_after and len(self.endpoints) > 1:
                ep.dropped_at = self.clock()
                others = sum(1 for e in self.endpoints if e.dropped_at is None)
                log.warning("dropping endpoint %s after %d failures in a row (%s); %d other(s) carry on, "
                            "it gets a trial request again in %g s", ep.base, ep.failures, ep.last_error,
                            others, self.revive_s)

    def drop(self, ep: Endpoint, reason: str) -> None:
        """Drop `ep` now (it failed its probe at load); AllEndpointsDown when none is left."""
        with self._lock:
            ep.dropped_at, ep.last_error = self.clock(), reason.split(". ")[0][:160]
            left = sum(1 for e in self.endpoints if e.dropped_at is None)
        if not left:
            raise self._all_down()
        log.warning("dropping endpoint %s at load (%s); %d other(s) carry on", ep.base, ep.last_error, left)

    def _backoff(self, attempt: int) -> float:
        with self._lock:
            return self._rng.uniform(0, min(self.backoff_cap_s, self.backoff_s * 2 ** attempt))

    def call(self, path: str, body: dict | None = None, *, at_root: bool = False) -> Any:
        """POST `body` (GET when None) to `path` under some endpoint's base (or root), with the
        pool's retries; the reply's JSON. The request's last error when retries run out; a one-line
        AllEndpointsDown when every endpoint is dropped."""
        reply, _ = self.call_on(path, body, at_root=at_root)
        return reply

    def call_on(self, path: str, body: dict | None = None, *, at_root: bool = False) -> tuple[Any, Endpoint]:
        """Like `call`, and also the endpoint that answered."""
        tried: set[int] = set()
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            ep = self._pick(tried)
            if ep is None:
                raise self._all_down() from None
            tried.add(id(ep))
            url = (ep.root if at_root else ep.base) + path
            try:
                reply = request_json(url, body, timeout=self.timeout, api_key=ep.api_key)
            except LMError as exc:
                if not retryable(exc):
                    self._done(ep, None)  # it answered: the request, not the replica, is at fault
                    raise
                self._done(ep, exc)
                last = exc
                if attempt < self.retries:
                    wait = self._backoff(attempt)
                    log.info("%s failed (%s); retry %d/%d in %.2f s", url, str(exc)[:120], attempt + 1,
                             self.retries, wait)
                    time.sleep(wait)
                continue
            self._done(ep, None)
            return reply, ep
        if len(self.endpoints) > 1 and all(e.dropped_at is not None for e in self.endpoints):
            raise self._all_down() from None
        assert last is not None
        raise last

    def _all_down(self) -> AllEndpointsDown:
        with self._lock:
            parts = [f"{e.base} ({e.last_error or 'dropped'})" for e in self.endpoints]
        return AllEndpointsDown(
            f"every endpoint is down: {'; '.join(parts)}. Check the servers, then run again "
            f"(a resumed run loses nothing)")


def pool_for(bases: list[tuple[str, str]], *, timeout: float, key_hosts: frozenset | None = None,
             retries: int | None = None) -> EndpointPool:
    """A pool over (base, root) pairs with each endpoint's key from the environment; an endpoint
    outside `key_hosts` (when given) is called without a key and says so once."""
    endpoints = []
    for base, root in bases:
        key = api_key_from_env(base)
        withheld = bool(key) and key_hosts is not None and server_host(base) not in key_hosts
        if withheld:
            log.warning("not sending the API key to %s: its host was not named when the app started", base)
            key = None
        endpoints.append(Endpoint(base=base, root=root, api_key=key, key_withheld=withheld))
    return EndpointPool(endpoints, timeout=timeout, retries=retries_from_env() if retries is None else retries)
