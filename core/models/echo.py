"""Reading what an OpenAI-compatible server echoes back when asked for a prompt's log-probs.

Knows: where a prompt ends among the echoed tokens (`generated_count`: servers differ in whether
they list the token they generated), which echoed tokens are the continuation (`pick_continuation`:
character spans right-aligned to the prompt's end, checked against `usage`, never usage alone),
the special tokens a server leaves out of the echo (`unlisted_specials`: llama-cpp-python drops
every `<|im_start|>`), vLLM's `prompt_logprobs` shape (`from_prompt_logprobs`), and one field of a
reply or a BadServerReply naming what is missing (`reply_field`), and whether the log-probs a
server sent can be used at all (`checked_logprobs`: every one a finite JSON number <= 0, up to
LOGPROB_TOLERANCE above 0 for rounding; every server path scores through it).

Does not know: HTTP, endpoints or models (core.models.server sends the requests and calls these).
Standard library only.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

from core.models.endpoints import BadServerReply
from core.models.lm import LOGPROB_TOLERANCE

SPECIAL_RE = re.compile(r"<\|[^|<>\s]{1,64}\|>|</?s>")  # special-token texts when no client tokenizer says


def checked_logprobs(values: Sequence[Any], tokens: Sequence[str], where: str) -> list[float]:
    """`values` as floats when every one is a usable log-prob: a JSON number (int or float, not a
    string, not a bool), finite, at most LOGPROB_TOLERANCE above 0 (such rounding is taken as 0.0).
    Otherwise one BadServerReply naming the server (`where`), the token and the value: a reply that
    fails is not used at all (NaN gave perplexity NaN and a score of 2.0; -inf a perplexity of
    1e304; +5 a perplexity of 0.0067, which ended a REER search at its threshold at once)."""
    out = []
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v <= LOGPROB_TOLERANCE
        if not ok:
            tok = tokens[i] if i < len(tokens) else "?"
            kind = "a string" if isinstance(v, str) else "not a number" if not isinstance(v, (int, float)) or \
                isinstance(v, bool) else "not finite" if not math.isfinite(v) else "above 0"
            raise BadServerReply(
                f"the server at {where} sent the log-prob {v!r} for token {tok!r} ({kind}; a log-prob is a finite "
                f"JSON number <= 0, up to {LOGPROB_TOLERANCE:g} above for rounding); its reply is not used")
        out.append(min(float(v), 0.0))
    return out


def reply_field(reply: Any, url: str, *keys: str | int) -> Any:
    """reply[k1][k2]...; a missing or ill-typed field becomes BadServerReply naming the URL."""
    node = reply
    for key in keys:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            path = "".join(f"[{k!r}]" for k in keys)
            raise BadServerReply(f"the server at {url} sent a reply without {path}: {str(reply)[:200]}") from None
    return node


def generated_count(tokens: Sequence[str], prompt: str, echoed: Any, completion_tokens: Any,
                    specials: re.Pattern = SPECIAL_RE) -> int:
    """How many of the echoed `tokens` at the end were generated, not prompt: the smallest count
    (usage's `completion_tokens` tried first) whose remaining tokens end with the prompt's own end
    and whose generated ones begin the text the reply added after the prompt. Servers differ:
    vLLM and a BOS-fixed llama-cpp-python list the generated token, a stock llama-cpp-python
    leaves it out. Special-token texts (`specials`) are ignored when comparing the prompt's end:
    llama-cpp-python lists them without text or not at all. BadServerReply when no count fits."""
    gen_text = echoed[len(prompt):] if isinstance(echoed, str) and echoed.startswith(prompt) else None
    tail = specials.sub("", prompt)[-24:]
    order = ([completion_tokens] if isinstance(completion_tokens, int) else []) + list(range(0, 4))
    for m in order:
        if not 0 <= m <= len(tokens):
            continue
        head, gen = "".join(tokens[:len(tokens) - m]), "".join(tokens[len(tokens) - m:])
        if specials.sub("", head).endswith(tail) and (gen_text is None or gen_text.startswith(gen)):
            return m
    raise BadServerReply(
        f"the echoed tokens do not agree with the echoed text (usage says {completion_tokens} generated, the "
        f"text after the prompt is {gen_text!r}, the tokens end {list(tokens[-3:])}); cannot tell where the "
        "prompt ends")


def unlisted_specials(head: Sequence[str], head_text: str, specials: re.Pattern = SPECIAL_RE) -> int | None:
    """How many special tokens in `head_text` (the text before the continuation) the listed `head`
    tokens leave out, or None when they differ from it in anything but special tokens.
    llama-cpp-python leaves out every special whose id is its BOS (`<|im_start|>` for ChatML
    models) and lists others (`<|im_end|>`) as empty strings; usage counts them all."""
    joined = "".join(head)
    if specials.sub("", joined) != specials.sub("", head_text):
        return None
    listed = len(specials.findall(joined)) + sum(1 for t in head if t == "")
    return max(0, len(specials.findall(head_text)) - listed)


def pick_continuation(
    tokens: Sequence[str],
    logprobs: Sequence[float | None],
    context_len: int,
    text_len: int,
    listed: int,
    prompt_tokens: int | None = None,
    text: str | None = None,
    specials: re.Pattern = SPECIAL_RE,
) -> tuple[list[str], list[float | None], int]:
    """The continuation's tokens and log-probs, and the number of listed prompt tokens before it.

    The first `listed` entries of `tokens` are the prompt's (the generated ones are already
    excluded, `generated_count`). Their character spans are right-aligned so the last ends at
    `text_len` (a BOS listed with text, or a first token the server left out, then moves only
    the head); a token belongs to the continuation when its span ends past `context_len`.
    `prompt_tokens` (usage) must be `listed` or `listed + 1` (a BOS counted, not listed), or,
    given the prompt `text`, that plus the special tokens the server left out of the echo BEFORE
    the continuation (`unlisted_specials`, checked against the text); the continuation's own
    tokens must then spell its text exactly. A disagreement is BadServerReply, never a guess.
    """
    end = text_len
    first = listed
    for i in range(listed - 1, -1, -1):
        if end <= context_len:
            break
        first = i
        end -= len(tokens[i])
    if isinstance(prompt_tokens, int) and prompt_tokens not in (listed, listed + 1):
        unlisted = (unlisted_specials(tokens[:first], text[:end], specials)
                    if text is not None and 0 <= end <= context_len else None)
        if (unlisted is None or prompt_tokens - listed not in (unlisted, unlisted + 1)
                or "".join(tokens[first:listed]) != text[end:text_len]):
            raise BadServerReply(
                f"the server lists {listed} prompt tokens but counts {prompt_tokens} in its usage"
                + (f", and {unlisted} special tokens left out before the continuation do not explain it"
                   if unlisted is not None else "") + "; cannot tell which tokens are the continuation")
    if first == listed:
        return [], [], listed
    if end > context_len:  # the listed tokens do not reach back to the continuation's start
        raise BadServerReply("the server's echoed tokens do not cover the continuation's start "
                             "(it leaves the first token out); give the request a non-empty context")
    return list(tokens[first:listed]), list(logprobs[first:listed]), first


def from_prompt_logprobs(entries: Any) -> tuple[list[str], list[float | None]]:
    """vLLM's prompt_logprobs ([None, {id: {logprob, decoded_token}}, ...]) as tokens and log-probs."""
    if not isinstance(entries, list):
        raise BadServerReply("the server's prompt_logprobs is not a list")
    tokens, lps = [], []
    for entry in entries:
        if not entry:
            tokens.append("")  # the first token (no log-prob); its text is unknown, it is never scored
            lps.append(None)
            continue
        info = next(iter(entry.values())) if isinstance(entry, dict) else None
        if not isinstance(info, dict):
            raise BadServerReply(f"the server's prompt_logprobs entry is not understood: {str(entry)[:100]}")
        tokens.append(str(info.get("decoded_token") or ""))
        lps.append(info.get("logprob"))
    return tokens, lps
