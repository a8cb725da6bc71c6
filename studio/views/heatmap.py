"""HTML renderings for the studio: the per-token heat map, its legend, and the score stats.

What it knows: how to turn a `core.models.scoring.Score` (with tokens kept) into escaped HTML. What it
does not know: Gradio, models, how scores are computed. Every piece of user text and model output
goes through `html.escape` before it reaches the page (tokens can contain <, > and &).

Heat map: one `<span class="tok">` per scored token, coloured by its log-prob clipped to
[clip_min, 0]: white at 0 (fully expected), deep red at clip_min or below (surprising). Spaces
are kept (`white-space: pre-wrap`), a newline shows as a faint ↵ followed by a real line break,
and a token's title (hover tooltip) gives its exact text and log-prob. Byte-level tokenizers can
split one character over several tokens (each decodes to U+FFFD); when the scored text is given,
such runs show the real character on their first token.
"""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass

# ColorBrewer "Reds": white at t=0 (log-prob 0) to deep red at t=1 (log-prob <= clip_min).
STOPS = [
    (0.0, (255, 255, 255)),
    (0.2, (254, 224, 210)),
    (0.4, (252, 187, 161)),
    (0.6, (252, 146, 114)),
    (0.8, (239, 59, 44)),
    (1.0, (165, 15, 21)),
]
DARK_TEXT_FROM = 0.75  # above this depth the token text turns white for contrast
FFFD = "\ufffd"
_NEWLINES = re.compile(r"\n+")

_HEAT_STYLE = (
    "white-space:pre-wrap;word-wrap:break-word;overflow-wrap:anywhere;line-height:1.75;"
    "font-size:14.5px;color:#1f2328;background:#fff;padding:12px 14px;border-radius:8px;"
    "border:1px solid #e5e7eb;font-family:ui-sans-serif,system-ui,-apple-system,'Segoe UI',sans-serif"
)


def depth(logprob: float, clip_min: float = -2.0) -> float:
    """0 for log-prob 0, 1 for clip_min or below (the clipped scale of REER's score)."""
    if math.isnan(logprob):
        return 1.0
    return min(1.0, max(0.0, logprob / clip_min))


def colour(t: float) -> str:
    """The heat colour at depth t in [0, 1], as #rrggbb."""
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in zip(STOPS, STOPS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return "#%02x%02x%02x" % tuple(round(a + (b - a) * f) for a, b in zip(c0, c1))
    return "#%02x%02x%02x" % STOPS[-1][1]


def display_texts(tokens: list[str], text: str | None) -> list[str]:
    """What each token shows: itself, except runs of broken (U+FFFD) pieces of one character,
    whose first token shows the character(s) recovered from `text`. Falls back to the raw tokens
    when `text` is absent or does not line up with them."""
    if text is None or not any(FFFD in t for t in tokens):
        return list(tokens)
    out, pos, i = [], 0, 0
    while i < len(tokens):
        tok = tokens[i]
        if FFFD not in tok:
            if not text.startswith(tok, pos):
                return list(tokens)
            out.append(tok)
            pos += len(tok)
            i += 1
            continue
        j = i
        while j < len(tokens) and FFFD in tokens[j]:
            j += 1
        end = text.find(tokens[j], pos) if j < len(tokens) else len(text)
        if end < pos:
            return list(tokens)
        out.append(text[pos:end])
        out.extend([""] * (j - i - 1))
        pos, i = end, j
    return out


def _token_body(shown: str) -> str:
    """Escaped token text with newlines made visible; never empty (a span must stay hoverable)."""
    if shown == "":
        return "\u200a"  # hair space: the continuation of a character split over several tokens
    body = html.escape(shown, quote=False)
    return _NEWLINES.sub(lambda m: '<span class="nl">↵</span>' + m.group(0), body)


def token_span(token: str, logprob: float, clip_min: float = -2.0, shown: str | None = None) -> str:
    t = depth(logprob, clip_min)
    fg = "#fff" if t >= DARK_TEXT_FROM else "inherit"
    p = math.exp(logprob) if logprob > -700 else 0.0
    tip = f"{json.dumps(token, ensure_ascii=False)}  log-prob {logprob:.3f}  (p = {p:.3g})"
    return (
        f'<span class="tok" style="background:{colour(t)};color:{fg}" '
        f'title="{html.escape(tip, quote=True)}">{_token_body(token if shown is None else shown)}</span>'
    )


def heatmap_html(tokens: list[str], logprobs: list[float], clip_min: float = -2.0,
                 text: str | None = None, unscored_prefix: str = "") -> str:
    """The reference as coloured token spans (module docstring). `text` is the scored text, used
    to repair split characters; `unscored_prefix` is shown greyed before the scored tokens."""
    shown = display_texts(tokens, text)
    parts = [f'<div class="heatmap" style="{_HEAT_STYLE}">']
    if unscored_prefix:
        parts.append(
            '<span class="unscored" title="not scored: the reference\'s first segment" '
            'style="color:#8b929a">' + html.escape(unscored_prefix, quote=False) + "</span>"
        )
    parts.extend(token_span(tok, lp, clip_min, s) for tok, lp, s in zip(tokens, logprobs, shown))
    parts.append("</div>")
    return "".join(parts)  # no whitespace between spans: pre-wrap would show it


def legend_html(clip_min: float = -2.0) -> str:
    stops = ", ".join(f"{colour(t)} {round(t * 100)}%" for t, _ in STOPS)
    return (
        '<div class="heat-legend">'
        '<span>log-prob&nbsp;0 <em>expected</em></span>'
        f'<span class="bar" style="background:linear-gradient(to right, {stops})"></span>'
        f'<span>{clip_min:g} or below <em>surprising</em></span>'
        '<span class="hint">hover a token for its log-prob · ↵ = newline</span>'
        "</div>"
    )


def placeholder_html(message: str) -> str:
    return f'<div class="heat-empty">{html.escape(message)}</div>'


@dataclass(frozen=True)
class StatsView:
    """What the stats block shows, collected by the app from one or two scores."""

    n_tokens: int
    mean_logprob: float
    ppl: float
    score: float
    precision: str
    seconds: float
    truncated: int = 0
    baseline_ppl: float | None = None  # the same reference scored with empty thinking
    baseline_score: float | None = None
    baseline_error: str | None = None  # why the comparison could not be made
    notes: tuple[str, ...] = ()


def _fmt_ppl(x: float) -> str:
    if math.isinf(x) or x >= 1e6:
        return f"{x:.3g}"
    return f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"


def _tile(label: str, value: str, key: str, hint: str = "", main: bool = False) -> str:
    cls = "stat main" if main else "stat"
    title = f' title="{html.escape(hint, quote=True)}"' if hint else ""
    return (f'<div class="{cls}" data-key="{key}"{title}><div class="v">{html.escape(value)}</div>'
            f'<div class="k">{html.escape(label)}</div></div>')


def stats_html(v: StatsView) -> str:
    tiles = [
        _tile("perplexity", _fmt_ppl(v.ppl), "ppl", "exp(−mean log-prob); 1 = perfectly expected", main=True),
        _tile("clipped score", f"{v.score:.3f}", "score", "REER's score: −mean of log-probs clipped to [−2, 0]; 0..2, lower is better"),
        _tile("mean log-prob", f"{v.mean_logprob:.3f}", "mean", "mean natural-log probability per scored token"),
        _tile("scored tokens", f"{v.n_tokens:,}", "tokens"),
        _tile(f"precision · {v.seconds:.2f} s", v.precision, "precision", "arithmetic used, and scoring time"),
    ]
    parts = [f'<div class="score-stats" data-ppl="{v.ppl!r}" data-score="{v.score!r}" data-tokens="{v.n_tokens}">',
             '<div class="tiles">', *tiles, "</div>"]
    if v.baseline_ppl is not None:
        diff = v.ppl - v.baseline_ppl
        rel = diff / v.baseline_ppl * 100 if v.baseline_ppl else 0.0
        verdict = "helps" if diff < 0 else ("hurts" if diff > 0 else "changes nothing")
        cls = "good" if diff < 0 else ("bad" if diff > 0 else "")
        parts.append(
            f'<div class="compare {cls}" data-baseline-ppl="{v.baseline_ppl!r}">'
            f"<b>Compare.</b> Empty thinking: perplexity {_fmt_ppl(v.baseline_ppl)} "
            f"(score {v.baseline_score:.3f}) · with this thinking: {_fmt_ppl(v.ppl)} · "
            f"difference <b>{diff:+,.2f}</b> ({rel:+.1f}%): the trajectory {verdict}.</div>"
        )
    elif v.baseline_error:
        parts.append(f'<div class="compare bad">Compare failed: {html.escape(v.baseline_error)}</div>')
    notes = list(v.notes)
    if v.truncated:
        notes.insert(0, f"The context was too long for the model: its first {v.truncated:,} tokens "
                        "(query and start of the thinking) were dropped before scoring.")
    for note in notes:
        parts.append(f'<div class="note">{html.escape(note)}</div>')
    parts.append("</div>")
    return "".join(parts)


def error_html(message: str) -> str:
    return ('<div class="score-stats score-error" role="alert"><b>Cannot score.</b> '
            f"{html.escape(message)}</div>")
