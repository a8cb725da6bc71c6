"""Settings declared once (core.settings): every config field carries help and bounds, flags parse
back to the config's defaults, a bad value is refused with a message that names the field, the
value and the range, and stored settings still load. No model."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from needs import ROOT

from core.models.scoring import ScoringConfig
from core.quality import QualityConfig
from core.r2.config import R2Config
from core.r2.judge import JudgeConfig
from core.r2.reward import RewardConfig
from core.reer.config import ReerConfig
from core.settings import SettingError, fields, from_args, loading, setting, validate
from core.train.trainer import TrainConfig
from studio.cli.main import build_parser, main

CONFIGS = [ReerConfig, R2Config, JudgeConfig, RewardConfig, QualityConfig, ScoringConfig, TrainConfig]


def _parse(*argv):
    return build_parser().parse_args(list(argv))


def _command(cls):
    """A command line of the CLI whose flags come from `cls`, and how it builds the config."""
    from studio.cli.train import config_from_args

    if cls is ReerConfig:
        return ["reer", "run", "--input", "x", "--out", "y"], lambda a: from_args(ReerConfig, a)
    if cls is R2Config:
        return ["r2", "run", "--input", "x", "--out", "y"], lambda a: from_args(R2Config, a)
    if cls is TrainConfig:
        return ["train", "--data", "x", "--out", "y"], config_from_args
    return ["score", "--input", "x", "--precision", "fp32"], lambda a: from_args(ScoringConfig, a)


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_has_help_and_a_valid_default(cls):
    for s in fields(cls):
        assert len(s.help) > 10, f"{cls.__name__}.{s.name} has no help"
        assert s.nested or s.type in (int, float, str, bool, tuple), f"{cls.__name__}.{s.name}: {s.type}"
    validate(cls())  # the defaults are inside their own bounds


@pytest.mark.parametrize("cls", [ReerConfig, R2Config, TrainConfig, ScoringConfig])
def test_flags_left_alone_give_the_config_defaults(cls):
    argv, build = _command(cls)
    assert build(_parse(*argv)) == cls()


def test_flags_set_fields_nested_ones_included():
    argv, build = _command(ReerConfig)
    cfg = build(_parse(*argv, "--candidates", "3", "--max-new-tokens", "50", "--no-reflection-cues", "--template",
                       "none", "--quality-disabled", "repetitive", "too_short", "--quality-min-tokens", "7"))
    assert cfg == dataclasses.replace(ReerConfig(), candidates=3, candidate_max_new_tokens=50, reflection_cues=False,
                                      template="none",
                                      quality=QualityConfig(min_tokens=7, disabled=("repetitive", "too_short")))
    argv, build = _command(R2Config)
    cfg = build(_parse(*argv, "--rounds", "4", "--no-plan", "--keep-going", "--judge-max-new-tokens", "64",
                       "--judge-method", "logprob", "--reward-w-length", "0"))
    assert (cfg.max_rounds, cfg.plan, cfg.stop_when_no_improvement, cfg.discard_worse) == (4, False, False, True)
    assert cfg.judge == JudgeConfig(max_new_tokens=64, method="logprob") and cfg.reward == RewardConfig(w_length=0)
    argv, build = _command(TrainConfig)
    cfg = build(_parse(*argv, "--bf16", "off", "--lora-r", "4", "--scheduler", "cosine", "--lr", "1e-4"))
    assert (cfg.bf16, cfg.lora_r, cfg.lora_alpha, cfg.lr_scheduler, cfg.lr) == (False, 4, 8, "cosine", 1e-4)
    assert build(_parse(*argv, "--bf16", "on", "--lora-alpha", "5")).lora_alpha == 5
    assert build(_parse(*argv, "--bf16", "on")).bf16 is True


def _bad_values(s):
    """Values the field's metadata refuses."""
    if s.choices is not None:
        return [("nope",) if s.type is tuple else "nope"]
    out = []
    if s.type in (int, float):
        step = 1 if s.type is int else 0.5
        if s.min is not None and s.min - step not in s.allow:
            out.append(s.min - step)
        if s.max is not None:
            out.append(s.max + step)
        if s.above is not None:
            out.append(s.above)
        if s.below is not None:
            out.append(s.below)
        out.append("3")  # text where a number belongs
        if s.type is int:
            out.append(2.5)
    if s.type is bool:
        out.append("yes")
    if not s.optional and s.type is not tuple:
        out.append(None)
    return out


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_bound_is_enforced_with_a_message_naming_field_value_and_range(cls):
    checked = 0
    for s in fields(cls):
        if s.nested:
            continue
        for bad in _bad_values(s):
            with pytest.raises(SettingError) as err:
                cls(**{s.name: bad})
            e = err.value
            assert isinstance(e, ValueError) and e.path == s.name and e.value == bad
            assert str(e).startswith(f"setting {s.name}={bad!r}: ") and e.allowed
            checked += 1
    assert checked >= len(fields(cls))


def test_messages_read_as_ranges():
    with pytest.raises(SettingError, match=r"setting candidates=0: must be from 1 to 64"):
        ReerConfig(candidates=0)
    with pytest.raises(SettingError, match=r"no_repeat_ngram=1: must be 0, or from 2 to 64"):
        ReerConfig(no_repeat_ngram=1)
    with pytest.raises(SettingError, match=r"template='x': must be one of train, chat, none"):
        ReerConfig(template="x")
    with pytest.raises(SettingError, match=r"eval_frac=1: must be at least 0 and below 1"):
        TrainConfig(eval_frac=1)
    with pytest.raises(SettingError, match=r"unknown filter 'too_long'"):
        QualityConfig(disabled=("too_long",))
    # rules across fields raise the same error
    with pytest.raises(SettingError, match=r"threshold=11: must be on the judge's scale, from 1 to 10"):
        R2Config(threshold=11)
    with pytest.raises(SettingError, match=r"epochs=0: .*max_steps"):
        TrainConfig(epochs=0)
    assert ReerConfig(no_repeat_ngram=0).no_repeat_ngram == 0 and TrainConfig(epochs=0, max_steps=3).max_steps == 3


def test_stored_settings_load_without_new_fields_and_outside_todays_bounds():
    old = {k: v for k, v in ReerConfig().as_dict().items() if k not in ("no_repeat_ngram", "keep_opening_words")}
    old.update(candidates=100, quality={"min_tokens": 5})  # stored before the bounds: still loads as it ran
    cfg = ReerConfig.from_dict(old)
    assert (cfg.candidates, cfg.no_repeat_ngram, cfg.quality.min_tokens) == (100, 0, 5)
    r2 = R2Config.from_dict({"max_rounds": 3, "judge": {"max_new_tokens": 0}, "unknown_later_field": 1})
    assert r2.max_rounds == 3 and r2.judge.max_new_tokens == 0 and r2.reward == RewardConfig()
    assert TrainConfig.from_dict({"lr": 5.0, "gone": 1}).lr == 5.0
    with pytest.raises(SettingError):  # outside from_dict the bounds hold again
        ReerConfig(candidates=100)
    assert ReerConfig.from_dict(ReerConfig().as_dict()) == ReerConfig()


def test_loading_context_is_scoped():
    with loading():
        assert ReerConfig(candidates=0).candidates == 0
    with pytest.raises(SettingError):
        ReerConfig(candidates=0)


def test_setting_metadata_is_plain_dataclass_metadata():
    @dataclasses.dataclass(frozen=True)
    class Demo:
        n: int = setting(3, min=1, max=5, help="how many")
        mode: str = setting("a", choices=("a", "b"), help="which", flag="--which")
        rate: float | None = setting(None, above=0, help="how fast")

        def __post_init__(self):
            validate(self)

    f = {x.name: x for x in dataclasses.fields(Demo)}
    assert f["n"].metadata["help"] == "how many" and f["n"].metadata["max"] == 5
    assert f["mode"].metadata["flag"] == ("--which",)
    assert Demo(rate=None).rate is None and Demo(rate=0.5).rate == 0.5
    with pytest.raises(SettingError, match=r"setting rate=0: must be none, or above 0"):
        Demo(rate=0)


# ---- the CLI's side of the contract ------------------------------------------------------------

@pytest.mark.parametrize("argv, says", [
    (["reer", "run", "--candidates", "0"], "--candidates 0: must be from 1 to 64"),
    (["reer", "run", "--max-new-tokens", "0"], "--candidate-max-new-tokens 0: must be at least 1"),
    (["r2", "run", "--threshold", "11"], "--threshold 11.0: must be on the judge's scale"),
    (["r2", "run", "--judge-low", "5", "--judge-high", "3"], "--judge-high 3.0: must be above low (5)"),
    (["score", "--clip-min", "1"], "--clip-min 1.0: must be at least -100 and below 0"),
    (["train", "--data", "d", "--eval-frac", "1"], "--eval-frac 1.0: must be at least 0 and below 1"),
])
def test_a_bad_flag_is_one_line_naming_the_flag_and_exit_2(tmp_path, capsys, argv, says):
    io = ["--input", str(tmp_path / "absent.jsonl")] if argv[0] != "train" else []
    out = ["--out", str(tmp_path / "out")] if argv[0] != "score" else []
    assert main([*argv, *io, *out, "--db", str(tmp_path / "p.db")] if argv[0] != "score" else [*argv, *io]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"palimpsest {argv[0]}: ") and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before any file was opened


def test_python_m_reports_a_bad_setting_as_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "studio.cli", "reer", "run", "--input", "x", "--out",
                          str(tmp_path / "o.jsonl"), "--no-repeat-ngram", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == "palimpsest reer: --no-repeat-ngram 1: must be 0, or from 2 to 64"


# ---- the studio's forms ---------------------------------------------------------------------------

def test_form_widgets_and_their_config_come_from_the_metadata():
    import gradio as gr

    from studio import forms

    k = forms.widget(ReerConfig, "candidates", value=3, slider=True, elem_id="k")
    assert isinstance(k, gr.Slider) and (k.minimum, k.maximum, k.value) == (1, 64, 3)
    assert k.label == "Candidates per segment [2]" and k.info == fields(ReerConfig)[0].help
    ngram = forms.widget(ReerConfig, "no_repeat_ngram")
    assert isinstance(ngram, gr.Number) and ngram.precision == 0
    assert ngram.minimum is None  # the config checks, naming the field (gradio's own bound would not)
    assert forms.problem(ReerConfig, {"no_repeat_ngram": 0}) == ""  # 0 (off) is allowed
    assert forms.problem(ReerConfig, {"no_repeat_ngram": 1}).startswith("No repeat ngram: 1 — must be 0, or from 2")
    mode = forms.widget(R2Config, "judge_mode", choices=[("you", "human"), ("model", "model")])
    assert isinstance(mode, gr.Radio) and mode.value == "model"
    with pytest.raises(ValueError, match="not all among"):
        forms.widget(R2Config, "judge_mode", choices=["human", "robot"])
    assert forms.widget(R2Config, "judge.max_new_tokens").label == "Judge tokens [256]"

    cfg = forms.config(R2Config, {"max_rounds": 3.0, "threshold": 8, "judge.max_new_tokens": 64.0})
    assert (cfg.max_rounds, cfg.threshold, cfg.judge.max_new_tokens) == (3, 8.0, 64)
    assert isinstance(cfg.max_rounds, int) and cfg.judge == JudgeConfig(max_new_tokens=64)
    with pytest.raises(SettingError) as err:
        forms.config(R2Config, {"judge.max_new_tokens": 0})
    assert err.value.path == "judge.max_new_tokens"
    text = forms.error_text(err.value, R2Config)
    assert text == "Judge tokens: 0 — must be at least 1 (setting judge.max_new_tokens)"
    with pytest.raises(SettingError) as err:
        forms.config(ReerConfig, {"seed": None, "max_steps": 2.5})
    assert forms.error_text(err.value, ReerConfig).startswith("Max steps: 2.5 — must be a whole number")


def test_a_usage_error_is_one_line_too(tmp_path):
    res = subprocess.run([sys.executable, "-m", "studio.cli", "reer", "run", "--input", "x", "--out", "y",
                          "--template", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("palimpsest reer run: argument --template: invalid choice: 'nope'")
