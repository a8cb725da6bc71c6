"""The language-model protocol every part of Palimpsest talks to. It imports no backend: loading a
spec is core.models.load's job (a table of backends, imported lazily).

An LM does two things: score continuations given contexts (log-probs of the continuation's
tokens), and generate chat replies. Two backends implement it: `core.models.hf.HFLM` (a local
Hugging Face model, the built-in default) and `core.models.server.OpenAILM` (an OpenAI-compatible
server such as vLLM).

Edge cases, pinned once (as lm-evaluation-harness does):
- A `ScoreRequest` is a tuple of context *pieces* plus a continuation. Local backends tokenize
  every piece and the continuation separately (no special tokens added) and join the ids, so
  the scored region is exactly the continuation's own tokens and pieces shared by several
  requests give identical token prefixes (that is what makes the prefix cache exact).
  Whitespace is never moved: if a piece ends in a space, that space stays in the context.
  Server backends tokenize the joined text and pick the continuation's tokens by character
  offset; a server token that straddles the boundary is counted as continuation.
- Contexts longer than the model allows are left-truncated only if the caller says so
  (`truncate="left"`), and the number of dropped tokens is reported; a continuation that does
  not fit is always an error, never silently cut.
- `generate` takes chat messages; the backend applies its chat template. Each reply is a
  `Generation`: the text (a `str`, so callers that only want text use it as one) and its
  `finish_reason`: "stop" (the model ended its turn or hit a stop string), "length" (the token
  budget ran out) or a server's own word ("content_filter", ...). Read the reason before
  transforming the text: `str` methods return plain strings.
- `count_tokens(text)` counts the model's own tokens of a piece (no special tokens added), the
  same count `generate` measures `max_new_tokens` in. A backend that cannot count raises
  LMError; nobody estimates from words.
- Stopping a generation: a caller that may want to cut a generation short (a run's Stop, see
  core.runs.controls) wraps its calls in `stop_when(check)`. Inside that block `generate` ends
  between tokens once `check()` is true (the local backend checks every token, the server
  backend stops waiting for its reply, the scripted one checks during its delay) and raises
  `GenerationStopped`: nothing half-written is returned. The signature of `generate` is the same
  for every backend; one that never looks at the check simply finishes its generation.
- Watching a generation: a caller that shows progress wraps its calls in `on_tokens(sink)`.
  Inside that block a backend that can see tokens as they come calls `sink(TokenProgress)` with
  the partial texts so far (one per sequence of the call) and the tokens generated, as often
  as it likes (the sink throttles); a backend that cannot calls it once with the finished texts.
  Partial texts are for display only: nothing stores them.

Specs `core.models.load.load_lm` knows: the built-in alias, a local folder or hub id
(`core.models.hf`), a server URL (`core.models.server`), and `scripted:[options]`, a deterministic
fake model for tests and demos (`core.models.scripted`). Each backend names itself by its `backend`
attribute (BACKENDS' keys), so nobody tells backends apart by class name. Loading each spec once per
process is `core.models.shelf`'s job.

What this module does not know: templates for REER (see `core.models.scoring`), prompts, storage.
"""
from __future__ import annotations

import contextlib
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import (
    Callable,
    Iterator,
    Literal,
    Protocol,
    Sequence,
    TypeVar,
    runtime_checkable,
)

BUILTIN_ALIAS = "smollm2-135m"  # the default model everywhere
DEFAULT_MODEL = BUILTIN_ALIAS

Precision = Literal["fp32", "bf16"]


class LMError(Exception):
    """Base class for model errors that a user can act on."""


class ModelNotFound(LMError):
    """The model spec names nothing that can be loaded."""


class ContextTooLong(LMError):
    """A scoring request does not fit in the model's context window."""


class GenerationStopped(LMError):
    """A generation was cut short because its caller's stop check turned true (`stop_when`)."""

    def __init__(self, message: str = "generation stopped on request", tokens: int = 0):
        super().__init__(message)
        self.tokens = tokens  # tokens generated before it stopped (0 when it never started)


@dataclass(frozen=True)
class ScoreRequest:
    context: tuple[str, ...]  # context pieces, tokenized one by one and joined, in order
    continuation: str  # the text whose tokens are scored; must not be empty


@dataclass(frozen=True)
class TokenLogprobs:
    tokens: list[str]  # the continuation's tokens as text
    logprobs: list[float]  # log p(token | everything before it), natural log, one per token
    context_tokens: int  # context tokens actually fed to the model (after truncation)
    truncated: int = 0  # context tokens dropped on the left to fit; 0 when nothing was cut


# How far above 0 a log-prob may be and still count as 0: servers and half-precision kernels print a
# certain token's log-softmax as 1e-7 or, in fp16/bf16, up to ~1e-3 above 0; more is a broken model.
LOGPROB_TOLERANCE = 1e-3

FINISH_STOP = "stop"  # the model ended its turn, or a stop string was reached
FINISH_LENGTH = "length"  # max_new_tokens (or the model's window) ran out first


class Generation(str):
    """One generated reply: the text itself (a str) plus why generation ended (`finish_reason`:
    FINISH_STOP, FINISH_LENGTH, or a server's own reason such as "content_filter")."""

    finish_reason: str

    def __new__(cls, text: str = "", finish_reason: str = FINISH_STOP) -> "Generation":
        self = super().__new__(cls, text)
        self.finish_reason = finish_reason
        return self

    def __getnewargs__(self):  # copy / pickle keep the reason (it lives in __dict__)
        return (str(self), self.finish_reason)


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 256  # upper bound on generated tokens per sample
    temperature: float = 0.8  # 0 means greedy decoding
    top_p: float = 0.85  # nucleus sampling mass
    top_k: int | None = None  # sample among the k likeliest tokens; 0 = off (whole vocabulary); None = the backend's default
    n: int = 1  # samples per prompt
    stop: tuple[str, ...] = ()  # generation ends at the first of these strings (not included)
    seed: int | None = None  # fixes sampling; None leaves it to chance
    no_repeat_ngram: int = 0  # ban repeating an n-gram of this many tokens within the output (0 = off; local models only)
    static: str = ""  # a prompt-cache hint: the leading text of the last message that later calls repeat (the
    # rewrite prompt's instructions, task and answer); a backend may keep its keys/values across calls (CTranslate2's
    # static_prompt; core.models.gencache needs no hint). Changes no output; "" = no hint
    extra: dict = field(default_factory=dict)  # backend-specific options, passed through


@runtime_checkable
class LM(Protocol):
    """What every backend provides. Keep it small."""

    name: str  # the spec it was loaded from, for records
    backend: str  # which backend it is: "hf", "server" or "scripted" (core.models.load.BACKENDS)
    max_length: int  # tokens the model can attend to at once
    has_fast_path: bool  # a bf16 scoring pass is worth trying (ScoringConfig.precision "auto")

    def chat_text(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """Render chat messages with the model's own chat template, as text."""
        ...

    def loglikelihood(
        self,
        requests: Sequence[ScoreRequest],
        precision: Precision = "fp32",
        truncate: Literal["error", "left"] = "error",
    ) -> list[TokenLogprobs]:
        """Per-token log-probs of each request's continuation, in request order."""
        ...

    def count_tokens(self, text: str) -> int:
        """The model's tokens in `text`, no special tokens added; LMError when it cannot tell."""
        ...

    def generate(self, messages: Sequence[dict], config: GenerationConfig, prefix: str = "") -> list[Generation]:
        """`config.n` sampled assistant replies to a chat, cut before the first stop string,
        each with its finish reason.

        `prefix` starts the assistant's reply (a prefill); the returned texts continue it and do
        not repeat it.
        """
        ...


# ---- stopping a generation from another thread (module docstring) ----------------------------

_STOP_CHECK: ContextVar[Callable[[], bool] | None] = ContextVar("palimpsest_stop_check", default=None)
_T = TypeVar("_T")


@contextlib.contextmanager
def stop_when(check: Callable[[], bool]) -> Iterator[None]:
    """Within this block (in this thread), generations end between tokens with GenerationStopped
    once `check()` is true (e.g. a run's `controls.stopped`)."""
    token = _STOP_CHECK.set(check)
    try:
        yield
    finally:
        _STOP_CHECK.reset(token)


def stop_check() -> Callable[[], bool] | None:
    """The check `stop_when` set for this thread, or None (nothing may stop a generation)."""
    return _STOP_CHECK.get()


def stop_requested() -> bool:
    """True when a `stop_when` check is set and says stop."""
    check = _STOP_CHECK.get()
    return bool(check is not None and check())


def raise_if_stopped(tokens: int = 0) -> None:
    """Raise GenerationStopped (with the tokens made so far) when a stop was requested."""
    if stop_requested():
        raise GenerationStopped(tokens=tokens)


def wait_unless_stopped(call: Callable[[], _T], poll_s: float = 0.1) -> _T:
    """`call()`'s result; while a `stop_when` check is set, the call runs in a helper thread and a
    stop ends the wait within `poll_s` with GenerationStopped (the call is left to finish on its
    own and its result is dropped). With no check set it is a plain call."""
    check = _STOP_CHECK.get()
    if check is None:
        return call()
    raise_if_stopped()
    box: dict = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001  (handed back to the waiting thread)
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, daemon=True, name="lm-call").start()
    while not done.wait(poll_s):
        if check():
            raise GenerationStopped()
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---- watching a generation as it goes (module docstring) -----------------------------------


@dataclass(frozen=True)
class TokenProgress:
    texts: tuple[str, ...]  # partial text of each sequence of the call so far (decoded, stop strings cut)
    tokens: int  # new tokens generated so far in the longest sequence of the call
    budget: int  # max_new_tokens of the call (the most `tokens` can reach)
    done: bool = False  # True on the last report of a call (the texts are final)


TokenSink = Callable[[TokenProgress], None]
_TOKEN_SINK: ContextVar[TokenSink | None] = ContextVar("palimpsest_token_sink", default=None)


@contextlib.contextmanager
def on_tokens(sink: TokenSink) -> Iterator[None]:
    """Within this block (in this thread), generations report their partial texts to `sink`."""
    token = _TOKEN_SINK.set(sink)
    try:
        yield
    finally:
        _TOKEN_SINK.reset(token)


def token_sink() -> TokenSink | None:
    """The sink `on_tokens` set for this thread, or None (nobody is watching)."""
    return _TOKEN_SINK.get()


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to (not including) the earliest stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def stop_reason(text: str, stop: Sequence[str], default: str) -> str:
    """FINISH_STOP when `text` contains a stop string (generation ended there), else `default`."""
    return FINISH_STOP if any(s and s in text for s in stop) else default


def require(lm: "LM", needs: set[str], what: str) -> None:
    """LMError before any work when `lm` cannot do a capability `what` needs ("chat_template",
    "prefix", "count_tokens", "score"). Only backends that can lack one (a server without a
    client tokenizer, core.models.server.OpenAILM.missing) say so; the others can do all."""
    missing = getattr(lm, "missing", None)
    lacking = missing(set(needs)) if callable(missing) else ""
    if lacking:
        raise LMError(f"{what}: {lacking}")


def details(lm: "LM") -> dict:
    """What a backend detected about its model, for the run's record (a server's dialect,
    window and tokenizer: core.models.server.OpenAILM.describe); {} for the others."""
    describe = getattr(lm, "describe", None)
    return describe() if callable(describe) else {}
