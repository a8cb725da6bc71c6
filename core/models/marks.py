"""What tells that a model changed since something was kept for it: `weights_signature` for a
model in memory (kept keys/values, a copy in another dtype: core.models.fastscore, core.models.gencache,
core.models.hf) and `files_mark` for a model saved on disk (a loaded model, a converted copy:
core.models.shelf, core.models.ct2).

Does not know: what is kept, or how a model is loaded. Imports torch only when a signature is
taken, so the shelf stays light to import.
"""
from __future__ import annotations

from pathlib import Path

SIGNATURE_SAMPLES = 16  # values read from each parameter, evenly strided, for weights_signature
# weights, sentencepiece vocabularies, chat templates
MODEL_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model", ".jinja")
MODEL_NAMES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt")  # what a load reads besides those


def weights_signature(model) -> int:
    """Changes when the weights of `model` change: a parameter given new storage (`.to(dtype)` and
    back), written in place by an op that counts (its version counter), or written by one that does
    not (torch's fused AdamW, transformers' default optimizer, leaves the counter as it was), seen in
    SIGNATURE_SAMPLES of its values. An optimizer step moves nearly every value of every trained
    parameter; a write that touches none of the sampled values of any parameter goes unseen."""
    import torch

    params = list(model.parameters())
    # an inference tensor (a twin made under inference_mode) keeps no version counter
    marks = tuple((p.data_ptr(), 0 if p.is_inference() else p._version) for p in params)
    with torch.no_grad():
        samples = [p.detach().reshape(-1)[::max(1, p.numel() // SIGNATURE_SAMPLES)][:SIGNATURE_SAMPLES].float()
                   for p in params]
        values = torch.cat(samples).cpu().numpy().tobytes() if samples else b""
    return hash((marks, values))


def files_mark(path: str | Path) -> tuple:
    """(name, size, mtime_ns) of each model file in the folder `path` (not below it: weights,
    config, tokenizer, template), or of the file itself: it changes when a model saved there is
    saved again (trained into the same folder), and not when a training run rewrites its
    metrics.json beside them. () for anything not on disk (an alias, a server URL, a hub id)."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            files = sorted(f for f in path.iterdir()
                           if f.is_file() and (f.suffix in MODEL_SUFFIXES or f.name in MODEL_NAMES))
        else:
            files = [path] if path.is_file() else []
        return tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    except OSError:  # removed or unreadable while looked at: no mark, so a load says what is wrong
        return ()
