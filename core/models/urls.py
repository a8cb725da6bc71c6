"""Server specs as URLs: which specs name an OpenAI-compatible server, and the (host, port) pairs
their requests (and the API key) go to. Beside core/models/server_spec.py, which reads the rest of
a server spec; kept apart so that core/models/endpoints.py can use it without importing the spec
reader (which imports the endpoints)."""
from __future__ import annotations

import urllib.parse


def is_server_spec(spec: str) -> bool:
    """Specs that name an OpenAI-compatible server: http(s)://host[:port]/v1[#model]."""
    return spec.startswith(("http://", "https://", "openai:"))


def server_host(spec: str) -> tuple[str, int] | None:
    """(host, port) a server spec's requests go to (the port from the scheme when not given; the
    host in lower case) of its first URL; None when `spec` is not a server URL or its host is
    unreadable. The API key follows these pairs (core.models.shelf.ModelPolicy.key_hosts, which
    takes every replica's: `server_hosts`)."""
    url = spec.strip()
    if url.startswith("openai:"):
        url = url[len("openai:"):].strip()
    parts = urllib.parse.urlsplit(url.partition("#")[0].split(",")[0])
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def server_hosts(spec: str) -> list[tuple[str, int]]:
    """(host, port) of every URL in a server spec (several replicas: a comma list before '#');
    unreadable ones are left out."""
    head = spec.strip()
    if head.startswith("openai:"):
        head = head[len("openai:"):].strip()
    head = head.partition("#")[0]
    return [h for h in (server_host(u) for u in head.split(",") if u.strip()) if h is not None]
