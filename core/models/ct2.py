"""Generation engines for local models: which arithmetic samples the text, and CTranslate2's.

Knows: the engine names (`ENGINES`; "auto" picks by measurement, docs/speed.md), reading the
`engine` setting ($PALIMPSEST_ENGINE), converting a local Hugging Face folder once into a
CTranslate2 folder under `core.models.env.cache_dir()` (atomic: a killed conversion leaves
nothing half-written), and `CT2LM`, an LM whose `generate` runs in CTranslate2 (int8 or fp32
weights, C++ decode loop) while everything else (chat template, token counts, scoring)
delegates to the `HFLM` it wraps, so scores stay the reference fp32 ones.

Generation keeps the protocol's promises (core.models.lm): seeded sampling (same seed, same
text, within an engine and thread count), the no-repeat n-gram ban over generated tokens only
(CTranslate2's own `no_repeat_ngram_size` counts only the tokens it generates when the prompt
is forwarded at once, which is how it is called here; tested), stop strings (checked after
each token; the row ends there), n > 1 (rows of one batch), finish reasons, the window, a
caller's stop check (`stop_when`) and its token sink (`on_tokens`).

The prompt's keys/values (`static_prompt`): a prompt is split into a static head and the rest, with
the same token ids either way (the split only moves work). The head is the caller's hint
(`GenerationConfig.static`: REER's rewrite prompt opens with its instructions, task and answer, ~1k
tokens, before the thinking it quotes), else, for n > 1, the whole prompt but its last token. The head
is computed once and copied to the n rows (not once per row), and a hinted head is kept for later
calls: on the kept generator (unseeded and greedy calls; at most PROMPT_CACHE_HEADS heads, then a
fresh generator, since CTranslate2 never drops one), and for seeded calls on the spare generator,
which after each seeded call is loaded and fed the last head in the background by a greedy
one-token call (greedy draws no random number, so the spare's sampler still starts from the next
seed). $PALIMPSEST_PREFIX_CACHE=0 (or `use_prompt_cache = False`) turns all of it off.

Does not know: scoring arithmetic (core.models.fastscore), REER, servers. CTranslate2 on CPU
offers int8 and float32 only (no bf16); bf16 generation is HFLM's own (`gen_precision`). The
converted copy is made from the folder on disk: a torch model trained in this process samples from
its old weights here (and scores with its new ones in the HFLM) until it is saved and loaded again.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import threading
import weakref
from pathlib import Path
from typing import Sequence

from core.models.env import cache_dir
from core.models.lm import (
    ContextTooLong,
    FINISH_LENGTH,
    FINISH_STOP,
    Generation,
    GenerationConfig,
    GenerationStopped,
    LMError,
    TokenProgress,
    cut_at_stop,
    raise_if_stopped,
    stop_check,
    token_sink,
)
from core.models.marks import files_mark

log = logging.getLogger(__name__)

ENGINE_ENV = "PALIMPSEST_ENGINE"
# engine name -> what generates: HF torch in fp32 / bf16, or CTranslate2 with these weights
ENGINES = {
    "hf": "Hugging Face torch, fp32 weights (the reference)",
    "hf-bf16": "Hugging Face torch, bf16 weights",
    "ct2-int8": "CTranslate2, int8 weights",
    "ct2-fp32": "CTranslate2, fp32 weights",
}
AUTO = "auto"
# what "auto" means for a local model, chosen by `palimpsest bench generate` (docs/speed.md):
# CTranslate2 int8 when the package imports, else torch bf16 where bf16 is native, else torch fp32 (with_engine)
AUTO_ORDER = ("ct2-int8", "hf-bf16")
SINK_EVERY = 4  # tokens between two reports to an `on_tokens` sink (it throttles further itself)
PROMPT_CACHE_HEADS = 4  # static heads the kept generator holds before it is replaced (module docstring)
_CONVERT_LOCK = threading.Lock()
_SAMPLE_LOCK = threading.Lock()  # CTranslate2's seed is process-wide: one generation at a time
_LIVE: "weakref.WeakSet[CT2LM]" = weakref.WeakSet()  # engines whose spare may still be building


@atexit.register
def _join_spares() -> None:
    """Let background spare builds end before the interpreter does (a CTranslate2 generator torn
    down mid-build aborts the process: "terminate called without an active exception")."""
    for lm in list(_LIVE):
        lm.ready()


class UnknownEngine(LMError):
    """The engine setting names no engine."""


def engine_from_env() -> str:
    """$PALIMPSEST_ENGINE, else "auto"; UnknownEngine (naming the variable and the choices) when bad."""
    raw = (os.environ.get(ENGINE_ENV) or AUTO).strip()
    return check_engine(raw, where=f"{ENGINE_ENV}={raw!r}")


def check_engine(name: str, where: str = "engine") -> str:
    if name != AUTO and name not in ENGINES:
        raise UnknownEngine(f"{where}: unknown engine; use one of {', '.join((AUTO, *ENGINES))}")
    return name


def ct2_available() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(name: str) -> str:
    """The concrete engine for a setting: "auto" -> the first of AUTO_ORDER this install can run."""
    name = check_engine(name)
    if name == AUTO:
        return next(e for e in AUTO_ORDER if not e.startswith("ct2") or ct2_available())
    if name.startswith("ct2") and not ct2_available():
        raise UnknownEngine(f"engine {name}: the ctranslate2 package is not installed; "
                            "run pip install ctranslate2==4.8.5, or choose engine hf")
    return name


def with_engine(hf, engine: str):
    """`hf` (an HFLM) set up to generate with `engine` (a CT2LM around it for ct2-*)."""
    auto = engine == AUTO
    engine = resolve_engine(engine)
    if auto and engine == "hf-bf16" and not getattr(hf, "bf16_native", False):
        engine = "hf"  # without ctranslate2, auto samples in bf16 only where bf16 is native (core.models.hf)
    if engine.startswith("ct2"):
        return CT2LM(hf, compute_type=engine.split("-", 1)[1].replace("fp32", "float32"))
    fp32_weights = str(getattr(getattr(hf, "model", None), "dtype", "torch.float32")) == "torch.float32"
    hf.gen_precision = "bf16" if engine == "hf-bf16" and fp32_weights else "fp32"
    return hf


def engines_of(lm) -> dict:
    """{"generate": engine, "score": engine} of a model, for run records."""
    gen = getattr(lm, "engine", None)
    if gen is None:
        precision = getattr(lm, "gen_precision", None)
        # the backend it says it is (core.models.load.BACKENDS; a test double of one records the same)
        backend = getattr(lm, "backend", None)
        other = backend if backend in ("scripted", "server") else [c for c in type(lm).__mro__ if c is not object][-1].__name__
        gen = {"bf16": "hf-bf16", "fp32": "hf"}.get(precision, other)
    return {"generate": gen, "score": getattr(lm, "score_engine", "hf" if hasattr(lm, "gen_precision") else gen)}


# ---- conversion ---------------------------------------------------------------------------------

def _fingerprint(folder: Path) -> str:
    """Changes when the folder's weights, config or tokenizer change (core.models.marks.files_mark)."""
    h = hashlib.sha1(str(folder.resolve()).encode())
    for name, size, mtime in files_mark(folder):
        h.update(f"{name}:{size}:{mtime}".encode())
    return h.hexdigest()[:16]


def converted_dir(source: str | Path, quantization: str) -> Path:
    """The CTranslate2 copy of a local HF folder in `quantization` (int8 | float32), converted on
    first use (seconds for the built-in model) and cached under cache_dir()/ct2."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    source = Path(source)
    if not (source / "config.json").exists():
        raise LMError(f"model folder {source}: no config.json; CTranslate2 converts local Hugging Face folders only")
    target = cache_dir() / "ct2" / f"{source.name}-{_fingerprint(source)}-{quantization}"
    if ctranslate2.contains_model(str(target)):
        return target
    with _CONVERT_LOCK:
        if ctranslate2.contains_model(str(target)):
            return target
        log.warning("converting %s for CTranslate2 (%s) once; cached in %s", source, quantization, target)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        TransformersConverter(str(source), load_as_float16=False).convert(str(tmp), quantization=quantization,
                                                                           force=True)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    return target


# ---- the engine ---------------------------------------------------------------------------------

class CT2LM:
    """An LM that generates with CTranslate2 and scores with the HFLM it wraps (module docstring).
    Any attribute it does not define is the HFLM's (tokenizer, model, device, ...)."""

    def __init__(self, hf, compute_type: str = "int8"):
        import torch

        from core.models.hf import resolve_spec

        self.hf = hf
        self.name = hf.name
        self.max_length = hf.max_length
        self.has_fast_path = hf.has_fast_path
        self.compute_type = compute_type
        self.engine = "ct2-" + compute_type.replace("float32", "fp32")  # for run records
        self.score_engine = "hf"
        self.source = resolve_spec(hf.name)
        self.threads = torch.get_num_threads()
        self._generator = None  # for unseeded and greedy calls; converted and loaded at first use
        self._spare = None  # (generator whose worker has never sampled, the head it cached): see _seeded
        self._building: threading.Thread | None = None
        self.use_prompt_cache = os.environ.get("PALIMPSEST_PREFIX_CACHE", "1") != "0"  # module docstring
        self._heads: set[tuple[str, ...]] = set()  # static heads the kept generator has cached
        self.static_tokens = {"reused": 0, "computed": 0}  # head tokens served from a cache / computed
        tok = hf.tokenizer
        ends = {tok.eos_token_id} - {None}
        extra = getattr(hf.model.generation_config, "eos_token_id", None)
        ends |= set(extra if isinstance(extra, list) else [extra]) - {None}
        self.end_ids = sorted(ends)

    @property
    def generator(self):
        if self._generator is None:
            self._generator = self._new_generator()
        return self._generator

    def _new_generator(self):
        import ctranslate2

        folder = converted_dir(self.source, self.compute_type)  # cached after the first call
        return ctranslate2.Generator(str(folder), device="cpu", compute_type=self.compute_type,
                                     intra_threads=self.threads)

    def _seeded(self, seed: int):
        """A generator whose sampler starts from `seed`. CTranslate2 seeds each worker thread's
        random generator once, from the process-wide seed, the first time that thread samples
        (set_random_seed later changes nothing for it), so a seeded call needs a worker that has
        never sampled: a fresh generator (~0.2-0.4 s to load int8 weights), built in the background
        after each seeded call so the next one rarely waits. Returns it and the head its cache holds."""
        import ctranslate2

        self.ready()
        gen, self._spare = self._spare or (self._new_generator(), ()), None
        ctranslate2.set_random_seed(seed % 2**32)  # read by gen's worker at its first sample
        return gen

    def _build_spare(self, head: tuple[str, ...]) -> None:
        """Load the next seeded call's generator in the background, its cache fed `head` (module docstring)."""

        def build() -> None:
            gen = self._new_generator()
            if head:  # greedy (sampling_topk 1): no random number is drawn, the worker stays unseeded
                gen.generate_batch([[head[-1]]], static_prompt=list(head), cache_static_prompt=True, max_length=1,
                                   sampling_topk=1, include_prompt_in_result=False)
            self._spare = (gen, head)

        self._building = threading.Thread(target=build, daemon=True, name="ct2-spare")
        self._building.start()
        _LIVE.add(self)

    def ready(self) -> None:
        """Wait for the spare generator's background build (benchmarks time calls without it)."""
        if self._building is not None:
            self._building.join()
            self._building = None

    def static_len(self, prompt: str, ids: list[int], static: str) -> int:
        """How many leading tokens of `ids` (the tokens of `prompt`) lie inside the hint `static`, less
        one (a token at the edge may merge with what follows); 0 when the hint is not in the prompt."""
        at = prompt.find(static) if static else -1
        if at < 0 or not getattr(self.hf.tokenizer, "is_fast", False):
            return 0
        end = at + len(static)
        enc = self.hf.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] != ids:
            return 0
        inside = sum(1 for _, stop in enc["offset_mapping"] if stop <= end)
        return max(0, min(inside - 1, len(ids) - 1))

    def __getattr__(self, name):  # only called for what this class lacks
        if name == "hf":
            raise AttributeError(name)
        return getattr(self.hf, name)

    # ---- protocol: all but generate delegate ----------------------------------------------------

    def chat_text(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        return self.hf.chat_text(messages, add_generation_prompt)

    def count_tokens(self, text: str) -> int:
        return self.hf.count_tokens(text)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text)

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        return self.hf.loglikelihood(requests, precision, truncate)

    def generate(self, messages: Sequence[dict], config: GenerationConfig, prefix: str = "") -> list[Generation]:
        raise_if_stopped()
        tok = self.hf.tokenizer
        text = self.hf.chat_text(messages, add_generation_prompt=True) + prefix
        ids = self.hf.encode(text)
        room = self.max_length - len(ids)
        if room <= 0:
            raise ContextTooLong(f"prompt of {len(ids)} tokens fills {self.name}'s window")
        budget = min(config.max_new_tokens, room)
        extra = dict(config.extra)
        least = min(int(extra.pop("min_new_tokens", 0) or 0), budget)
        watch = _Watch(tok, config.n, budget, config.stop, set(self.end_ids), stop_check(), token_sink())
        kwargs = dict(max_length=budget, min_length=least, include_prompt_in_result=False, return_end_token=True,
                      end_token=self.end_ids, no_repeat_ngram_size=config.no_repeat_ngram or 0,
                      callback=watch.step)
        if config.temperature > 0:
            # CTranslate2's sampling_topk 0 is the whole vocabulary (off); None keeps that default
            kwargs.update(sampling_topk=config.top_k or 0, sampling_topp=config.top_p,
                          sampling_temperature=config.temperature)
        else:
            kwargs.update(sampling_topk=1)
        kwargs.update(extra)
        prompt = tok.convert_ids_to_tokens(ids)
        cut = self.static_len(text, ids, config.static) if self.use_prompt_cache else 0
        keep = cut > 0  # a hinted head is kept for later calls
        if self.use_prompt_cache and not cut and config.n > 1:
            cut = len(ids) - 1  # no hint: the prompt is still computed once for the n rows
        head, prompt = tuple(prompt[:cut]), prompt[cut:]
        if head:
            kwargs.update(static_prompt=list(head), cache_static_prompt=keep)
        with _SAMPLE_LOCK:
            if config.seed is not None and config.temperature > 0:
                gen, warm = self._seeded(config.seed)
                hit = keep and warm == head
                try:
                    results = gen.generate_batch([prompt] * config.n, **kwargs)
                finally:
                    self._build_spare(head if keep else ())
            else:
                if keep and head not in self._heads and len(self._heads) >= PROMPT_CACHE_HEADS:
                    self._generator, self._heads = None, set()  # CTranslate2 never drops a head: start afresh
                hit = keep and head in self._heads
                results = self.generator.generate_batch([prompt] * config.n, **kwargs)
                if keep:
                    self._heads.add(head)
        self.static_tokens["reused" if hit else "computed"] += len(head)
        if watch.stopped:
            raise GenerationStopped(f"generation stopped on request after {watch.longest} token(s)",
                                    tokens=watch.longest)
        out = []
        self.last_ids = [list(res.sequences_ids[0]) for res in results]  # the last call's rows (tests, debugging)
        for row in self.last_ids:
            ended = bool(row) and row[-1] in watch.ends
            body = [t for t in row if t not in watch.ends]
            text = tok.decode(body, skip_special_tokens=True)
            reason = FINISH_STOP if ended or any(s and s in text for s in config.stop) or len(row) < budget \
                else FINISH_LENGTH
            out.append(Generation(cut_at_stop(text, config.stop), reason))
        watch.finish([str(g) for g in out])
        return out


class _Watch:
    """The per-token callback of one generate_batch call: ends a row at a stop string, ends all
    rows when the caller's stop check turns true, and reports partial texts to a sink."""

    def __init__(self, tok, n, budget, stop, ends, check, sink):
        self.tok, self.budget, self.stop, self.ends = tok, budget, tuple(s for s in stop if s), ends
        self.check, self.sink = check, sink
        self.rows: list[list[int]] = [[] for _ in range(n)]
        self.tail = max((len(s) for s in self.stop), default=0) + 4  # tokens that can hold a stop string
        self.stopped = False
        self.calls = 0

    @property
    def longest(self) -> int:
        return max(len(r) for r in self.rows)

    def step(self, res) -> bool:
        row = self.rows[res.batch_id]
        row.append(res.token_id)
        if self.check is not None and (self.stopped or self.check()):
            self.stopped = True
            return True
        self.calls += 1
        if self.sink is not None and self.calls % (SINK_EVERY * len(self.rows)) == 0:
            self._report(done=False)
        if self.stop and res.token_id not in self.ends:
            recent = self.tok.decode(row[-self.tail:], skip_special_tokens=True)
            if any(s in recent for s in self.stop):
                return True
        return False

    def _report(self, done: bool, texts: list[str] | None = None) -> None:
        if texts is None:
            texts = [cut_at_stop(self.tok.decode([t for t in r if t not in self.ends], skip_special_tokens=True),
                                 self.stop) for r in self.rows]
        self.sink(TokenProgress(tuple(texts), self.longest, self.budget, done))

    def finish(self, texts: list[str]) -> None:
        if self.sink is not None:
            self._report(done=True, texts=texts)
