"""Local versus server scoring: does a real OpenAI-compatible server give the same scores?

Starts llama-cpp-python's server on the built-in model's GGUF twice (tests/llama_server.py):
stock, and with the BOS fix (--kv_overrides tokenizer.ggml.add_bos_token=bool:true). Reports
the alignment check's numbers for both (the stock one is refused), then scores `--items`
HelloBench items (reference cut near `--ref-chars` at a sentence end; read from
shared/data/hellobench beside the repo, never copied; docs/example.jsonl when that is absent)
under template `none`, fp32, with the local backend (the built-in model, converted from the same
GGUF) and through the fixed server with the built-in tokenizer on the client, and prints a
Markdown table: tokens scored, mean log-prob per token, the difference, and seconds per item.

Run from the repository root (needs `make server-deps`; a few CPU-minutes on a busy 2-core
machine; only the differences are meaningful, the times are under that load):
    python docs/measure_serving.py [--items 5] [--ref-chars 600]
Results: docs/serving.md.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def items(n: int, ref_chars: int) -> list[tuple[str, str, str]]:
    """(id, query, reference) triples: HelloBench, else docs/example.jsonl."""
    try:
        from core.bench import hellobench_items

        got = [(it.id, it.query, it.reference) for it in hellobench_items()[:n]]
    except FileNotFoundError:
        rows = [json.loads(line) for line in (ROOT / "docs" / "example.jsonl").read_text().splitlines()]
        got = [(r["id"], r["query"], r["reference"]) for r in rows[:n]]
    out = []
    for iid, query, ref in got:
        cut = [m.end() for m in re.finditer(r"[.!?]\s", ref) if m.end() <= ref_chars]
        out.append((iid, query, ref[:cut[-1]].strip() if cut else ref[:ref_chars]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=5)
    ap.add_argument("--ref-chars", type=int, default=600)
    args = ap.parse_args()

    from core.models.dialect import MisalignedServer
    from core.models.load import load_lm
    from core.models.scoring import ScoringConfig, score
    from core.models.server import OpenAILM
    from tests.llama_server import LlamaServer

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the servers (finally below)
    cfg = ScoringConfig(template="none")
    logs = Path(tempfile.mkdtemp(prefix="palimpsest-serving-"))
    print("| server | perplexity on the probe | counting tail, mean log-prob | verdict |")
    print("|---|---:|---:|---|")
    srv = None
    try:
        for bos_fix in (False, True):
            srv = LlamaServer(bos_fix=bos_fix, log_dir=logs)
            name = "llama-cpp-python, BOS fix" if bos_fix else "llama-cpp-python, stock"
            try:
                lm = OpenAILM.from_spec(srv.spec())
                a = lm.describe()["endpoints"][srv.url]["alignment"]
                print(f"| {name} | {a['perplexity']:g} | {a['tail_mean_logprob']:g} | accepted |")
            except MisalignedServer as exc:
                m = re.search(r"perplexity ([\d.e+]+), counting tail ([-\d.e+]+)", str(exc))
                print(f"| {name} | {m.group(1)} | {m.group(2)} | refused |")
            if not bos_fix:
                srv.stop()
        server_lm = OpenAILM.from_spec(srv.spec())
        local = load_lm("smollm2-135m")
        print()
        print("| item | tokens local | tokens server | mean log-prob local | mean log-prob server | difference "
              "| s local | s server |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        diffs = []
        for iid, query, ref in items(args.items, args.ref_chars):
            t0 = time.perf_counter()
            a = score(local, query, "", ref, cfg)
            t1 = time.perf_counter()
            b = score(server_lm, query, "", ref, cfg)
            t2 = time.perf_counter()
            diffs.append(abs(a.mean_logprob - b.mean_logprob))
            print(f"| {iid[:40]} | {a.n_tokens} | {b.n_tokens} | {a.mean_logprob:.4f} | {b.mean_logprob:.4f} "
                  f"| {b.mean_logprob - a.mean_logprob:+.4f} | {t1 - t0:.1f} | {t2 - t1:.1f} |")
    finally:
        if srv is not None:
            srv.stop()
    print(f"\nlargest difference in mean log-prob: {max(diffs):.4f} over {len(diffs)} item(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
