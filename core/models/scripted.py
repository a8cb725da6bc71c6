"""`scripted:`: a deterministic fake language model for tests and demos (lm-evaluation-harness ships
its DummyLM the same way). No weights, no tokenizer files, no network; it answers in milliseconds.

Spec: `scripted:` followed by comma-separated options (`load_lm("scripted:judge=7,seed=3")`):
- `seed=N`: base of every sampled text (default 0). Same seed, same text; another seed, another.
- `judge=X`: grading prompts (a prompt that asks for an `Overall:` line) get a readable
  judgment: X for every numbered item ("1: <score>" lines in the asked format), `Overall: X`
  and a short critique. Without it such prompts get prose, as a weak model would write.
- `delay=S`: each generation takes S seconds (tests of pausing, stopping or watching a slow run:
  a stop check set with core.models.lm.stop_when ends the wait with GenerationStopped; a token
  sink set with core.models.lm.on_tokens sees the replies grow token by token during it, about
  every STREAM_EVERY_S seconds, then a last report with done=True. The replies are chosen, and
  the call logged, before the wait).
- `max_length=N`: the window in tokens (default 8192).
- `script=PATH` (or a bare PATH ending in .json): canned replies, a JSON object
  `{"rules": [{"when": [regex, ...], "reply": text | [text, ...], "judge": X, "critique": text,
  "name": text, "last": bool}], "seed": N, "judge": X, "delay": S}`. The first rule whose every
  regex matches the conversation (all message contents, joined; the last message alone with
  `"last": true`) answers: a text each time, a list one item per
  reply in order (the last repeats), or a judgment with score X. A canned reply is what the
  script says: stop strings cut it, the token budget and the n-gram ban do not (finish "stop").
  Options after the path win.
  Paths may not contain commas.
Python code may also build `ScriptedLM(rules=[Rule(...)])` with callable replies.

What it does, as the LM protocol (core.models.lm) asks:
- Tokens: words, single punctuation marks and whitespace runs, each led by the whitespace before
  it (`tokenize`); joining them gives the text back. `count_tokens` counts them.
- `generate`: `n` replies; with no rule matching, plausible first-person planning prose built
  from the prompt's own words (sentences picked by a seeded random.Random; temperature 0 ignores
  the seed, as greedy decoding would). A prefill is continued, not repeated; an opened tag in it
  (`<rewrite>`) is closed after the text, and a tag pair the last message asks for
  (`inside <rewrite></rewrite>`) wraps it. Stop strings cut the reply (finish "stop");
  `max_new_tokens` cuts it (finish "length"); `no_repeat_ngram=n` keeps any n-gram of the
  generated tokens from repeating (sentences that would repeat one are skipped). Canned replies
  are returned as written (see `script`).
- `loglikelihood`: per-token log-probs that depend on the text: a word already in the context
  is likely (about -0.2 to -0.6, likelier the more often it appeared), a word seen earlier in the
  continuation less so (-1.2), an unseen word unlikely (-3 to -4, fixed per word), whitespace
  and punctuation almost free. So a thinking that names what the answer says scores better.
  Truncation follows the protocol (error, or drop context tokens on the left).
- `chat_text`: a ChatML rendering (`<|im_start|>role\\n...<|im_end|>\\n`).
Every generate call is logged in `calls` (rule name, messages, prefix).

Does not know: REER, R2 or their prompts (the judge format is read from the prompt itself).
"""
from __future__ import annotations

import json
import random
import re
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Sequence

from core.models.lm import (
    FINISH_LENGTH,
    FINISH_STOP,
    ContextTooLong,
    Generation,
    GenerationConfig,
    LMError,
    ModelNotFound,
    Precision,
    ScoreRequest,
    TokenLogprobs,
    TokenProgress,
    raise_if_stopped,
    token_sink,
)

PREFIX = "scripted:"
STREAM_EVERY_S = 0.1  # how often a watched, delayed generation reports its growing replies
DEFAULT_MAX_LENGTH = 8192

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_OVERALL = re.compile(r"^\s*Overall:", re.M)
_ITEM = re.compile(r"^\s*(\d+):\s*<score>", re.M)
_ASKED_TAG = re.compile(r"<(\w+)></\1>")
_OPEN_TAG = re.compile(r"<(\w+)>")
_STOPWORDS = frozenset("""
about above after again against also answer because been before being below between both could does doing
down during each every from further have having here into itself just more most much must only other over
own private same should some such than that their them then there these they this those through under until
very what when where which while whom will with would write writing your yours you're like make made many
rewrite paragraph overall critique score grade format checklist number thinking task person reply
""".split())
_FALLBACK_WORDS = ("reader", "opening", "ending", "detail", "voice", "scene", "image", "middle")
_SENTENCES = (
    "I want to open with the {a} and keep the {b} for later.",
    "Hmm, maybe the {a} should come before the {b}.",
    "Wait, that would bury the {a}; I should bring it forward.",
    "The reader needs one concrete {a}, not a list of {b} ideas.",
    "Maybe I should weigh another way in: start from the {a} instead.",
    "So the order is the {a}, then the {b}, then a short ending.",
    "I keep asking myself whether the {a} earns its place next to the {b}.",
    "Let me name the {a} plainly and let the {b} carry the feeling.",
    "Is that too much about the {a}? Perhaps one sentence is enough.",
    "Then the {b} can close it, quietly, without explaining the {a}.",
    "What does the {a} sound like up close? I should listen before I write.",
    "No, the {b} is the heart of it; the {a} only frames it.",
)
_CRITIQUE = "The middle drags and the ending is rushed; give the {a} more room and cut one repeated line."


class Call(NamedTuple):
    """One generate call, as logged: the rule that answered ("" for none), the chat, the prefill."""

    rule: str
    messages: list
    prefix: str


@dataclass(frozen=True)
class Ask:
    """What a callable reply is given: the call, its config, and its place in the sequence."""

    messages: list  # the chat
    config: GenerationConfig  # its settings (seed, n, max_new_tokens, stop...)
    prefix: str  # the prefill the reply continues
    nth: int  # earlier calls this rule has answered (0 for the first)
    sample: int  # which of the call's n replies (0-based)


@dataclass(frozen=True)
class Rule:
    when: tuple[str, ...] = ()  # regexes that must all match the conversation; () matches every call
    reply: str | tuple[str, ...] | Callable[[Ask], str] | None = None  # text, texts in order, or a function
    judge: float | None = None  # reply as a judge giving this score (when `reply` is None)
    critique: str | None = None  # the judge's critique (default: a short one naming a word of the prompt)
    name: str = ""  # recorded in `calls` (e.g. "draft", "judge")
    last: bool = False  # match the last message only (a retry that quotes an earlier prompt stays apart)

    def matches(self, messages: Sequence[dict]) -> bool:
        text = str(messages[-1].get("content", "")) if self.last and messages else _conversation(messages)
        return all(re.search(p, text, re.S) for p in self.when)


def tokenize(text: str) -> list[str]:
    """The scripted model's tokens: words / punctuation marks led by their whitespace, and
    trailing whitespace; "".join(tokenize(t)) == t."""
    return _TOKEN.findall(text)


def _stable(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _conversation(messages: Sequence[dict]) -> str:
    return "\n\n".join(str(m.get("content", "")) for m in messages)


def _number(x: float) -> str:
    return f"{x:g}"


class ScriptedLM:
    """The deterministic fake model (module docstring). Thread-safe."""

    backend = "scripted"  # core.models.load.BACKENDS

    def __init__(self, seed: int = 0, judge: float | None = None, delay: float = 0.0, rules: Sequence[Rule] = (),
                 max_length: int = DEFAULT_MAX_LENGTH, name: str = PREFIX):
        self.name = name  # the spec, for records
        self.max_length = max_length  # the window in tokens
        self.has_fast_path = False  # nothing to gain from a bf16 pass
        self.seed = seed  # base of every sampled text
        self.judge = judge  # score of the built-in judge reply (None: grading prompts get prose)
        self.delay = delay  # seconds each generation takes (its replies stream to a watching sink meanwhile)
        self.rules = tuple(rules)  # canned replies, first match wins
        self.calls: list[Call] = []  # every generate call, in order
        self._answered = [0] * len(self.rules)  # calls answered per rule
        self._served = [0] * len(self.rules)  # replies served per rule (list replies advance by these)
        self._lock = threading.Lock()

    # ---- loading ------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: str) -> "ScriptedLM":
        """Build from `scripted:opt=value,...` (module docstring); ModelNotFound names a bad option."""
        spec = spec.strip()
        body = spec[len(PREFIX):] if spec.startswith(PREFIX) else ""
        opts: dict = {"name": spec if spec != "scripted" else PREFIX}
        for part in (p.strip() for p in body.split(",")):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq:
                key, value = "script", part
            key, value = key.strip(), value.strip()
            try:
                if key == "script":
                    opts.update(_read_script(value, spec))
                elif key in ("seed", "max_length"):
                    opts[key] = int(value)
                elif key in ("judge", "delay"):
                    opts[key] = float(value)
                else:
                    raise ModelNotFound(f"model '{spec}': unknown option '{key}'; use seed, judge, delay, "
                                        "max_length or script (e.g. scripted:judge=7,seed=1)")
            except ValueError:
                raise ModelNotFound(f"model '{spec}': option {key}={value!r} needs a number") from None
        if opts.get("max_length", DEFAULT_MAX_LENGTH) < 16 or opts.get("delay", 0) < 0:
            raise ModelNotFound(f"model '{spec}': max_length must be 16 or more and delay 0 or more")
        return cls(**opts)

    # ---- protocol -----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)

    def count_tokens(self, text: str) -> int:
        return len(tokenize(text))

    def chat_text(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def generate(self, messages: Sequence[dict], config: GenerationConfig, prefix: str = "") -> list[Generation]:
        raise_if_stopped()
        out = self._replies(list(messages), config, prefix)
        sink = token_sink()
        self._wait(out, config, sink)
        if sink is not None:
            longest = max((len(tokenize(g)) for g in out), default=0)
            sink(TokenProgress(tuple(str(g) for g in out), longest, config.max_new_tokens, done=True))
        return out

    def _wait(self, out: list[Generation], config: GenerationConfig, sink) -> None:
        """The delay, in slices a stop check can end; a sink sees the replies grow during it."""
        start = time.monotonic()
        end, shown = start + self.delay, start
        toks = [tokenize(g) for g in out]
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.02))
            raise_if_stopped()
            now = time.monotonic()
            if sink is not None and now - shown >= STREAM_EVERY_S and now < end:
                shown = now
                frac = (now - start) / self.delay
                part = [t[:int(len(t) * frac)] for t in toks]
                sink(TokenProgress(tuple("".join(p) for p in part), max((len(p) for p in part), default=0),
                                   config.max_new_tokens))

    def _replies(self, messages: list, config: GenerationConfig, prefix: str) -> list[Generation]:
        convo = _conversation(messages)
        index = next((i for i, r in enumerate(self.rules) if r.matches(messages)), None)
        rule = self.rules[index] if index is not None else None
        with self._lock:
            self.calls.append(Call(rule.name if rule else "", messages, prefix))
            nth = self._answered[index] if index is not None else 0
            first = self._served[index] if index is not None else 0
            if index is not None:
                self._answered[index] += 1
                self._served[index] += config.n
        out = []
        for j in range(config.n):
            if rule is not None and (rule.reply is not None or rule.judge is not None):
                text, canned = self._canned(rule, Ask(messages, config, prefix, nth, j), first + j, convo), True
            elif self.judge is not None and _OVERALL.search(convo):
                text, canned = self._judgment(self.judge, None, convo), True
            else:
                last = str(messages[-1].get("content", "")) if messages else ""
                text, canned = self._prose(convo, last, config, prefix, j), False
            if canned and prefix and text.startswith(prefix):
                text = text[len(prefix):]
            out.append(self._cut(text, config, budget=not canned))
        return out

    def loglikelihood(
        self,
        requests: Sequence[ScoreRequest],
        precision: Precision = "fp32",
        truncate: Literal["error", "left"] = "error",
    ) -> list[TokenLogprobs]:
        results = []
        for req in requests:
            if not req.continuation:
                raise LMError("scoring request with an empty continuation: nothing to score")
            ctx = [t for piece in req.context for t in tokenize(piece)]
            cont = tokenize(req.continuation)
            dropped = len(ctx) + len(cont) - self.max_length
            if dropped > 0:
                if truncate != "left" or len(cont) >= self.max_length:
                    raise ContextTooLong(
                        f"{len(ctx)} context + {len(cont)} reference tokens exceed {self.name}'s "
                        f"{self.max_length}-token window; shorten the input or allow left-truncation")
                ctx = ctx[dropped:]
            seen: dict[str, int] = {}
            for t in ctx:
                w = t.strip().lower()
                seen[w] = seen.get(w, 0) + 1
            written: set[str] = set()
            lps = []
            for t in cont:
                w = t.strip().lower()
                lps.append(_logprob(w, seen.get(w, 0), w in written))
                written.add(w)
            results.append(TokenLogprobs(cont, lps, len(ctx), max(dropped, 0)))
        return results

    # ---- inside -------------------------------------------------------------------------------

    def _canned(self, rule: Rule, ask: Ask, served: int, convo: str) -> str:
        if callable(rule.reply):
            return str(rule.reply(ask))
        if isinstance(rule.reply, str):
            return rule.reply
        if rule.reply:
            return rule.reply[min(served, len(rule.reply) - 1)]
        return self._judgment(rule.judge, rule.critique, convo)

    def _judgment(self, score: float, critique: str | None, convo: str) -> str:
        items = sorted({int(n) for n in _ITEM.findall(convo)}) or [1]
        words = _words(convo)
        lines = [f"{i}: {_number(score)}" for i in items]
        critique = critique or _CRITIQUE.format(a=words[_stable(convo) % len(words)])
        return "\n".join(lines) + f"\nOverall: {_number(score)}\nCritique: {critique}"

    def _prose(self, convo: str, last: str, config: GenerationConfig, prefix: str, sample: int) -> str:
        """Planning prose from the prompt's words, seeded (module docstring)."""
        greedy = config.temperature <= 0
        key = f"{self.seed}|{'greedy' if greedy else config.seed}|{sample if not greedy else 0}"
        if config.seed is None or greedy:
            key += f"|{_stable(convo + prefix)}"
        rng = random.Random(key)
        words = _words(convo)
        asked = list(dict.fromkeys(_ASKED_TAG.findall(last)))
        opened = [t for t in _OPEN_TAG.findall(prefix) if f"</{t}>" not in prefix]
        short = bool(prefix.strip()) or bool(asked)  # a prefill or a tag: one paragraph
        n_par = 1 if short else rng.randint(3, 5)
        generated: list[str] = []
        grams: set[tuple] = set()
        paragraphs = []
        for _ in range(n_par):
            sentences = []
            for _ in range(rng.randint(2, 4)):
                for _attempt in range(12):
                    a, b = rng.sample(words, 2) if len(words) > 1 else (words[0], words[0])
                    s = rng.choice(_SENTENCES).format(a=a, b=b)
                    lead = " " if sentences else ("\n\n" if paragraphs else "")
                    toks = tokenize(lead + s)
                    if self._fresh(generated, toks, grams, config.no_repeat_ngram):
                        sentences.append(s)
                        generated += toks
                        break
            if sentences:
                paragraphs.append(" ".join(sentences))
        body = "\n\n".join(paragraphs)
        if prefix and prefix[-1:].isalnum():
            body = ". " + body  # the prefill stopped mid-sentence: finish it
        elif prefix and not prefix[-1:].isspace():
            body = " " + body
        text = body + "".join(f"</{t}>" for t in reversed(opened))
        for tag in asked:
            if tag not in opened and f"<{tag}>" not in prefix:
                text += f"\n<{tag}>\n{body.strip(' .')}\n</{tag}>"
        return text

    @staticmethod
    def _fresh(generated: list[str], toks: list[str], grams: set, n: int) -> bool:
        """Whether appending `toks` repeats no n-gram of the generated tokens (n < 2: always)."""
        if n < 2:
            return True
        seq = generated + toks
        new = [tuple(seq[i:i + n]) for i in range(max(0, len(generated) - n + 1), len(seq) - n + 1)]
        if len(set(new)) < len(new) or any(g in grams for g in new):
            return False
        grams.update(new)
        return True

    def _cut(self, text: str, config: GenerationConfig, budget: bool = True) -> Generation:
        """The reply cut at the first stop string or (`budget`) at max_new_tokens, with its reason."""
        toks = tokenize(text)
        within = "".join(toks[:config.max_new_tokens]) if budget else text
        hits = [i for i in (text.find(s) for s in config.stop if s) if 0 <= i <= len(within)]
        if hits:
            return Generation(text[:min(hits)], FINISH_STOP)
        if len(toks) > config.max_new_tokens:
            return Generation(within, FINISH_LENGTH)
        return Generation(text, FINISH_STOP)


def _logprob(word: str, in_context: int, written: bool) -> float:
    """The scripted log-prob of one token (module docstring)."""
    if not word or not word[0].isalnum():
        return -0.05
    if in_context:
        return -0.6 / (1 + 0.5 * min(in_context, 4)) - 0.05
    if written:
        return -1.2
    return -3.0 - (_stable(word) % 100) / 100


def _words(text: str) -> list[str]:
    """Content words of a prompt, first appearance order; a fixed few when it has none."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text):
        lw = w.lower()
        if lw not in _STOPWORDS and not lw.startswith("'"):
            seen.setdefault(lw, None)
    return list(seen) or list(_FALLBACK_WORDS)


def _read_script(path: str, spec: str) -> dict:
    """Options from a JSON script file (module docstring); ModelNotFound names what is wrong."""
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelNotFound(f"model '{spec}': cannot read the script {p} ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelNotFound(f"model '{spec}': {p} line {exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ModelNotFound(f"model '{spec}': {p} must hold a JSON object with 'rules'")
    unknown = set(data) - {"rules", "seed", "judge", "delay", "max_length"}
    if unknown:
        raise ModelNotFound(f"model '{spec}': {p}: unknown field(s) {sorted(unknown)}")
    rules = []
    for i, r in enumerate(data.get("rules", [])):
        if not isinstance(r, dict) or set(r) - {"when", "reply", "judge", "critique", "name", "last"}:
            raise ModelNotFound(f"model '{spec}': {p}: rules[{i}] must be an object with when, reply, judge, "
                                "critique, name or last")
        when = r.get("when", [])
        when = (when,) if isinstance(when, str) else tuple(when)
        reply = r.get("reply")
        if reply is None and r.get("judge") is None:
            raise ModelNotFound(f"model '{spec}': {p}: rules[{i}] needs a 'reply' or a 'judge' score")
        for pattern in when:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ModelNotFound(f"model '{spec}': {p}: rules[{i}].when {pattern!r}: {exc}") from None
        rules.append(Rule(when=when, reply=tuple(reply) if isinstance(reply, list) else reply,
                          judge=r.get("judge"), critique=r.get("critique"), name=str(r.get("name", f"rule{i}")),
                          last=bool(r.get("last", False))))
    out = {k: data[k] for k in ("seed", "judge", "delay", "max_length") if k in data}
    out["rules"] = rules
    return out
