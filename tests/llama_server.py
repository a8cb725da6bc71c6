"""A real OpenAI-compatible server for the tests: llama-cpp-python's, on the built-in model's GGUF.

`LlamaServer(bos_fix=...)` starts `python -m llama_cpp.server --model GGUF --host 127.0.0.1
--port FREE` (stock, or with `--kv_overrides tokenizer.ggml.add_bos_token=bool:true`, the fix
for its shifted log-probs on a model that adds no BOS), waits until GET /v1/models answers and
stops it at the end. `make test` installs the server (`make server-deps`); without llama_cpp the
tests that use it are skipped saying so. Used by tests/drills/test_server_real.py and the serving
measurements (docs/measure_serving.py). Does not know what the tests check.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BOS_FIX = ("--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true")
ALIAS = "smollm2"  # the model id the server lists (--model_alias)
N_CTX = 4096
SKIP_REASON = ("llama-cpp-python is not installed: run `make server-deps` (pip install "
               "'llama-cpp-python[server]==0.3.36', a ~20-minute build the first time, cached after)")


def available() -> bool:
    """True when llama_cpp and its server's dependencies can be imported here."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi"))


def gguf() -> Path:
    from core.models.hf import builtin_gguf_path

    return builtin_gguf_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One server process; `url` is its /v1 base, `spec(...)` a Palimpsest model spec for it."""

    def __init__(self, bos_fix: bool, log_dir: Path, threads: int = 2, start_timeout_s: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.bos_fix = bos_fix
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--host", "127.0.0.1",
               "--port", str(self.port), "--model_alias", ALIAS, "--n_ctx", str(N_CTX),
               "--n_threads", str(threads), *(BOS_FIX if bos_fix else ())]
        self.log = Path(log_dir) / f"llama-server-{'bos' if bos_fix else 'stock'}-{self.port}.log"
        env = dict(os.environ, no_proxy="127.0.0.1,localhost")
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env)
        self._wait(start_timeout_s)

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}; see {self.log}")
            try:
                with opener.open(f"{self.url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s:g} s; see {self.log}")

    def spec(self, tokenizer: bool = True) -> str:
        """The model spec: the served alias, the built-in tokenizer (chat templates and prefills
        rendered here), and the window it was started with (it does not report one)."""
        return f"{self.url}#{ALIAS}" + ("#tokenizer=smollm2-135m" if tokenizer else "") + f"#max_length={N_CTX}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
