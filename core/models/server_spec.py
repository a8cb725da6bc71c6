"""The server spec (`[openai:]URL[,URL...][#MODEL][#tokenizer=TOK][#max_length=N]`, docs/serving.md)
and the model it names.

Knows: how a spec splits into replicas' URLs and options (`parse_spec` -> ServerSpec, each bad
piece refused naming the fix), the served models a server lists (`list_models`: GET /models) and
which of them the spec means (`choose_model`), and the client tokenizer an option names
(`load_tokenizer`: a local folder, a cached hub id or the built-in alias).

Does not know: requests beyond /models, dialects, scoring (core.models.server, core.models.dialect).
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from core.models.echo import reply_field
from core.models.endpoints import BadServerReply, request_json
from core.models.lm import BUILTIN_ALIAS, ModelNotFound

VLLM_SPEC = "http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct"  # the spec matching VLLM_COMMAND
SPEC_OPTIONS = ("tokenizer", "max_length")


@dataclass(frozen=True)
class ServerSpec:
    urls: tuple[tuple[str, str], ...]  # (base, root) per replica: base is the /v1 API, root the server root
    model: str | None  # the model id after '#', None to take the first one /models lists
    tokenizer: str | None = None  # `tokenizer=` option: render chats and prefills on the client
    max_length: int | None = None  # `max_length=` option: the window when the server does not say

    @property
    def base(self) -> str:  # the first replica's API base
        return self.urls[0][0]

    @property
    def root(self) -> str:  # the first replica's server root (vLLM's /tokenize lives there)
        return self.urls[0][1]


def _split_url(spec: str, url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelNotFound(
            f"model '{spec}': {url.strip()!r} is not a server URL. Use http://host:port/v1#model-name "
            f"(several replicas: http://a:8000/v1,http://b:8000/v1#model-name), e.g. {VLLM_SPEC}")
    path = parts.path.rstrip("/") or "/v1"
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    root_path = path[: -len("/v1")] if path.endswith("/v1") else path
    return base, urllib.parse.urlunsplit((parts.scheme, parts.netloc, root_path, "", ""))


def parse_spec(spec: str) -> ServerSpec:
    """Split `[openai:]URL[,URL...][#model][#tokenizer=T][#max_length=N]` (module docstring)."""
    text = spec.strip()
    if text.startswith("openai:"):
        text = text[len("openai:"):].strip()
    head, *tail = text.split("#")
    urls = tuple(dict.fromkeys(_split_url(spec, u) for u in head.split(",") if u.strip()))
    if not urls:
        raise ModelNotFound(f"model '{spec}': no server URL before '#'; use http://host:port/v1#model-name")
    model, options = None, {}
    for i, piece in enumerate(tail):
        key, eq, value = piece.partition("=")
        if eq and key.strip() in SPEC_OPTIONS:
            options[key.strip()] = value.strip()
        elif i == 0:
            model = piece.strip() or None
        else:
            raise ModelNotFound(f"model '{spec}': unknown option {piece!r} after '#'; options are "
                                + ", ".join(f"#{o}=..." for o in SPEC_OPTIONS))
    max_length = None
    if options.get("max_length"):
        if not options["max_length"].isdigit() or int(options["max_length"]) <= 0:
            raise ModelNotFound(f"model '{spec}': max_length={options['max_length']!r}: give a whole number of "
                                "tokens above 0, e.g. #max_length=8192")
        max_length = int(options["max_length"])
    return ServerSpec(urls=urls, model=model, tokenizer=options.get("tokenizer") or None, max_length=max_length)


def load_tokenizer(name: str, spec: str):
    """The client tokenizer: the built-in alias (its cached folder) or a local folder / cached hub id."""
    try:
        from transformers import AutoTokenizer

        if name == BUILTIN_ALIAS:
            from core.models.hf import builtin_model_dir

            return AutoTokenizer.from_pretrained(builtin_model_dir())
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (ImportError, OSError, ValueError) as exc:
        raise ModelNotFound(
            f"model '{spec}': tokenizer={name!r} could not be loaded ({str(exc).splitlines()[0][:120]}); give a "
            f"local folder with tokenizer files, a hub id in the local cache, or {BUILTIN_ALIAS}") from None


def list_models(base: str, *, timeout: float, api_key: str | None = None) -> list[dict]:
    """The entries of GET {base}/models; [] when the server has no such endpoint (404)."""
    url = f"{base}/models"
    try:
        reply = request_json(url, timeout=timeout, api_key=api_key)
    except BadServerReply as exc:
        if exc.status == 404:
            return []
        raise
    data = reply_field(reply, url, "data")
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
