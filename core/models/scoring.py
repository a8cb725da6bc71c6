"""Reference-conditioned scoring: how expected is answer y given query x and thinking z?

For (x, z, y) this module reports the scored token count, the mean log-prob (unclipped), the
perplexity exp(-mean), and REER's clipped score: per-token log-probs clipped to [-2, 0],
score = -mean (a log-perplexity between 0 and 2; lower is better).

Templates (how x, z, y become one token sequence; only y's tokens are scored) are defined in
core.format, the one module that spells the think block:
- `train` (default): the model's chat template with user = x, then the assistant turn exactly as
  exported and trained, `<think>\n{z}\n</think>\n{y}`.
- `chat`: the same with y wrapped in answer tags, `<think>\n{z}\n</think>\n<answer>\n{y}`
  (the layout REER runs were stored with before the assistant-turn contract; see docs/assistant-turn.md).
  Under both, the header, each segment of z (led by its "\n\n" separator) and the bridge
  (`\n</think>\n`, plus `<answer>\n` under `chat`) are separate pieces, tokenized one by one
  (see core.models.lm), so y's first token never merges with the text before it and
  candidates that share the first segments share their token prefix exactly. Pieces are cut
  where byte-level BPE cuts anyway, so the ids equal those of the joined text (tested).
- `none`: context = x + z concatenated exactly as given (a thinking text is used verbatim,
  trailing blank lines included; a list of segments is joined with "\n\n"; nothing else is
  added), tokenized as one text; continuation = y, tokenized separately and appended
  (lm-evaluation-harness).
Before anything is tokenized, `check_length` refuses a text that cannot fit the model's window
whatever the tokenizer does (more than MAX_CHARS_PER_TOKEN characters a token).
Option `skip_first_segment`: y's first segment moves into the context and is not scored (the
"\n\n" after it is scored with the rest).

`score_candidates` is REER's hot loop: K trajectories that differ in one segment. The default
precision is fp32 (exact). With "auto" it scores them all in bf16, then re-scores in fp32
every candidate whose score lies within `recheck_margin` of another's (or of the baseline), so
the order and the choice are the ones fp32 gives; "bf16" alone is fastest but close calls can
flip. Measured here (`palimpsest bench scoring`): model-written candidates differ by ~1e-3,
the same size as bf16's error (~2e-3), so "auto" re-checks nearly everything and fp32 wins.
"auto" takes the bf16 pass only where the model says it is worth it (`lm.has_fast_path`: fp32
weights on hardware with native bf16, core.models.hf.native_bf16); elsewhere it is plain fp32.
`scoring_precision` says which arithmetic a setting resolves to and why (runs record it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

from core.format import (
    DEFAULT_TEMPLATE,
    TEMPLATE_HELP,
    TEMPLATES,
    UnknownTemplate,
    answer_part,
    template,
)
from core.models.lm import LM, LOGPROB_TOLERANCE, LMError, ScoreRequest, TokenLogprobs
from core.segments import SEP, join_segments, split_segments
from core.settings import setting, validate


class ScoringError(LMError):
    """The inputs cannot be scored as given (empty reference, unknown template, far too long...)."""


# No tokenizer in use has a token longer than this (SmolLM2's longest is 81 characters), so a text
# of more than window * MAX_CHARS_PER_TOKEN characters cannot fit the window: it is refused before
# any of it is tokenized (tokenizing a 200 MB text first took over 8 GB).
MAX_CHARS_PER_TOKEN = 128


def check_length(lm: LM, query: str, thinking: str | Sequence[str], reference: str, cfg: ScoringConfig) -> None:
    """ScoringError when the text cannot fit `lm`'s window whatever its tokenizer does: the reference
    alone (it is never cut), or, unless cfg.truncate is "left", query + thinking + reference."""
    window = int(lm.max_length)
    most = window * MAX_CHARS_PER_TOKEN
    fix = "shorten it or use a model with a longer window"
    if len(reference) > most:
        raise ScoringError(f"the reference is {len(reference):,} characters: more than {lm.name}'s {window}-token "
                           f"window can hold (at most {most:,} characters, {MAX_CHARS_PER_TOKEN} a token); {fix}")
    if cfg.truncate != "left":
        z = len(thinking) if isinstance(thinking, str) else sum(len(s) + len(SEP) for s in thinking)
        total = len(query) + z + len(reference)
        if total > most:
            raise ScoringError(f"query, thinking and reference are {total:,} characters: more than {lm.name}'s "
                               f"{window}-token window can hold (at most {most:,} characters, {MAX_CHARS_PER_TOKEN} "
                               f"a token); {fix}, or let the context be cut on the left (truncate left)")


@dataclass(frozen=True)
class ScoringConfig:
    template: Literal["train", "chat", "none"] = setting(DEFAULT_TEMPLATE, choices=tuple(TEMPLATES),
                                                         help=TEMPLATE_HELP)
    skip_first_segment: bool = setting(False, help="leave y's first segment unscored (the REER authors did)")
    clip_min: float = setting(-2.0, min=-100, below=0, help="per-token log-probs below this are clipped for the score")
    precision: Literal["fp32", "auto", "bf16"] = setting("fp32", choices=("fp32", "auto", "bf16"),
                                                         help="scoring arithmetic: fp32 (exact), bf16 (fastest), "
                                                              "auto (bf16, close calls re-checked in fp32)")
    recheck_margin: float = setting(0.01, min=0, max=2, help="score gap under which bf16 results are re-scored in fp32")
    truncate: Literal["error", "left"] = setting("error", choices=("error", "left"),
                                                 help="a sequence too long for the model: fail (error), or drop "
                                                      "context tokens from the left")

    def __post_init__(self):
        validate(self)


@dataclass(frozen=True)
class Score:
    n_tokens: int  # scored tokens of the reference
    mean_logprob: float  # mean natural-log probability per scored token (unclipped)
    ppl: float  # exp(-mean_logprob)
    score: float  # REER's score: -mean of log-probs clipped to [clip_min, 0]; lower is better
    precision: str = "fp32"  # which arithmetic produced these numbers
    truncated: int = 0  # context tokens dropped on the left (0 = nothing cut)
    tokens: list[str] | None = field(default=None, repr=False)  # scored tokens, when asked
    logprobs: list[float] | None = field(default=None, repr=False)  # their log-probs, when asked

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("n_tokens", "mean_logprob", "ppl", "score", "truncated")}
        if self.tokens is not None:
            d.update(tokens=self.tokens, logprobs=self.logprobs)
        return d


def summarize(tl: TokenLogprobs, clip_min: float, precision: str, keep_tokens: bool) -> Score:
    lps = tl.logprobs
    if not lps:
        raise ScoringError("the reference produced no tokens to score")
    bad = next((lp for lp in lps if not (math.isfinite(lp) and lp <= LOGPROB_TOLERANCE)), None)
    if bad is not None:  # a server's are checked as they arrive (core.models.echo); this guards every backend
        raise ScoringError(f"the model gave the log-prob {bad!r}, which is not a finite number <= 0; "
                           "nothing is scored from it (a broken model or numerics: try --precision fp32)")
    mean = sum(lps) / len(lps)
    clipped = -sum(min(0.0, max(clip_min, lp)) for lp in lps) / len(lps)
    return Score(
        n_tokens=len(lps),
        mean_logprob=mean,
        ppl=math.exp(min(-mean, 700.0)),
        score=clipped,
        precision=precision,
        truncated=tl.truncated,
        tokens=list(tl.tokens) if keep_tokens else None,
        logprobs=list(lps) if keep_tokens else None,
    )


def _layout(cfg: ScoringConfig):
    try:
        return template(cfg.template)
    except UnknownTemplate as e:
        raise ScoringError(str(e)) from None


def split_reference(reference: str, cfg: ScoringConfig) -> tuple[str, str]:
    """(unscored context, scored text) of a reference: the answer after any think block, with
    its first segment moved out of the scored part when `cfg.skip_first_segment` (the "\n\n"
    after that segment is scored with the rest). The studio's heat map uses the same split."""
    reference = answer_part(reference)
    if _layout(cfg).strip:
        reference = reference.strip()
    if cfg.skip_first_segment:
        ref_segs = split_segments(reference)
        if len(ref_segs) > 1:
            return ref_segs[0], SEP + SEP.join(ref_segs[1:])
    return "", reference


def build_request(lm: LM, query: str, thinking: str | Sequence[str], reference: str,
                  cfg: ScoringConfig) -> ScoreRequest:
    """The scoring request for x, z and y under the configured template (module docstring).

    `thinking` is a text or its segments. Under the chat layouts a text is cut into segments
    (the pieces candidates share); under `none` a text is used exactly as given."""
    layout = _layout(cfg)
    check_length(lm, query, thinking, reference, cfg)  # before anything is tokenized or rendered
    unscored, reference = split_reference(reference, cfg)
    if not reference.strip():
        raise ScoringError("the reference is empty: nothing to score")
    if not layout.chat:
        context = query + (thinking if isinstance(thinking, str) else join_segments([s for s in thinking if s.strip()]))
        if not context:
            raise ScoringError(f"template '{layout.name}' needs a query or a thinking text before the reference")
        pieces: tuple[str, ...] = (context,)
    else:
        segments = [s for s in _segments_of(thinking) if s.strip()]
        # the separator leads the next segment: "text" | "\n\nNext" tokenizes as the joined text does
        body = tuple(segments[:1]) + tuple(SEP + s for s in segments[1:])
        head = lm.chat_text([{"role": "user", "content": query}], add_generation_prompt=True) + layout.opening
        if body:
            pieces = (head,) + body[:-1] + (body[-1] + layout.bridge,)
        else:
            pieces = (head + layout.bridge,)  # empty thinking: "<think>\n\n</think>\n..."
    return ScoreRequest(pieces + ((unscored,) if unscored else ()), reference)


def _segments_of(thinking: str | Sequence[str]) -> list[str]:
    return split_segments(thinking) if isinstance(thinking, str) else list(thinking)


def score_many(
    lm: LM,
    items: Sequence[tuple[str, str | Sequence[str], str]],
    cfg: ScoringConfig = ScoringConfig(),
    keep_tokens: bool = False,
) -> list[Score]:
    """Scores of (query, thinking, reference) triples; thinking is text or a list of segments.

    Exact (fp32) unless cfg.precision is "bf16": there is no decision here to protect.
    """
    precision = "bf16" if cfg.precision == "bf16" else "fp32"
    reqs = [build_request(lm, q, z, y, cfg) for q, z, y in items]
    out = lm.loglikelihood(reqs, precision=precision, truncate=cfg.truncate)
    return [summarize(tl, cfg.clip_min, precision, keep_tokens) for tl in out]


def score(lm: LM, query: str, thinking: str | Sequence[str], reference: str,
          cfg: ScoringConfig = ScoringConfig(), keep_tokens: bool = False) -> Score:
    return score_many(lm, [(query, thinking, reference)], cfg, keep_tokens)[0]


def close_calls(scores: Sequence[float], margin: float, baseline: float | None = None) -> set[int]:
    """Indices whose score is within `margin` of another's, or of the baseline."""
    close = set()
    for i, a in enumerate(scores):
        if baseline is not None and abs(a - baseline) < margin:
            close.add(i)
        for j in range(i + 1, len(scores)):
            if abs(a - scores[j]) < margin:
                close.update((i, j))
    return close


def scoring_precision(lm: LM, requested: str) -> tuple[str, str]:
    """(what `score_candidates` computes with for the setting `requested`: "fp32", "bf16" or "auto"
    (bf16, near-ties re-checked in fp32), why in words)."""
    if requested != "auto":
        return requested, f"precision {requested} was asked for"
    why = getattr(lm, "bf16_why", "") or "this backend has no bf16 pass"
    if lm.has_fast_path:
        return "auto", f"bf16 with fp32 re-checks of near-ties: {why}"
    return "fp32", f"auto chose fp32: {why}"


def score_candidates(
    lm: LM,
    query: str,
    segments: Sequence[str],
    index: int,
    candidates: Sequence[str],
    reference: str,
    cfg: ScoringConfig = ScoringConfig(),
    baseline: float | None = None,
) -> list[Score]:
    """Scores of the trajectory with segments[index] replaced by each candidate in turn.

    `index == len(segments)` appends the candidate as a new last segment. `baseline` (the
    current trajectory's fp32 score) makes candidates close to it re-checked too.
    """
    reqs = []
    for cand in candidates:
        segs = list(segments[:index]) + [cand] + list(segments[index + 1:])
        reqs.append(build_request(lm, query, segs, reference, cfg))
    precision, _ = scoring_precision(lm, cfg.precision)
    if precision != "auto":
        out = lm.loglikelihood(reqs, precision=precision, truncate=cfg.truncate)
        return [summarize(tl, cfg.clip_min, precision, False) for tl in out]
    fast = [summarize(tl, cfg.clip_min, "bf16", False)
            for tl in lm.loglikelihood(reqs, precision="bf16", truncate=cfg.truncate)]
    redo = sorted(close_calls([s.score for s in fast], cfg.recheck_margin, baseline))
    if redo:
        exact = lm.loglikelihood([reqs[i] for i in redo], precision="fp32", truncate=cfg.truncate)
        for i, tl in zip(redo, exact):
            fast[i] = summarize(tl, cfg.clip_min, "fp32", False)
    return fast

