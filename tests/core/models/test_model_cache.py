"""The converted-model cache under two processes at once: the second waits for the first's
conversion and uses it, instead of converting again and replacing the folder under the first
one's readers (as two `palimpsest` commands, or two test workers, on a fresh machine would)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from core.models import hf

HOLDER = textwrap.dedent("""
    import fcntl, sys, time
    from pathlib import Path
    target = Path(sys.argv[1])
    with open(target.with_name(target.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        print("locked", flush=True)
        go = target.with_name("go")
        while not go.exists():  # the test says when "the conversion" is done
            time.sleep(0.02)
        target.mkdir(parents=True)
        (target / "model.safetensors").write_text("converted by the other process")
        (target / "tokenizer.json").write_text("{}")
""")


def test_a_conversion_under_way_in_another_process_is_waited_for_and_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PALIMPSEST_CACHE", str(tmp_path))
    target = tmp_path / "models" / hf.BUILTIN_ALIAS
    target.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        converted = []
        monkeypatch.setitem(hf.LOCAL_ALIASES, hf.BUILTIN_ALIAS, lambda: converted.append(1) or tmp_path / "x.gguf")
        import transformers

        def no_second_conversion(*a, **k):
            raise AssertionError("converted a second time while another process held the lock")

        monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_second_conversion)
        # the other process finishes 1.5 s from now: a converter that does not wait converts before that
        threading.Timer(1.5, (target.parent / "go").touch).start()
        assert hf.builtin_model_dir() == target
        assert (target / "model.safetensors").read_text() == "converted by the other process"
    finally:
        (target.parent / "go").touch()
        holder.wait(timeout=30)
    assert holder.returncode == 0
