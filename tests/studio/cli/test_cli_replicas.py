"""Repeated model flags in the batch commands: replicas of one served model become one spec
(`URL,URL#model`, the form core.models.server reads); a single flag is the spec itself; values
that cannot be replicas of one model are refused naming the flag."""
from __future__ import annotations

import pytest

from studio.cli.batch import join_specs
from studio.cli.common import CLIError
from studio.cli.main import build_parser


def test_one_or_no_flag_is_the_spec_itself():
    assert join_specs(None, "--model") == "smollm2-135m"
    assert join_specs(["scripted:delay=0"], "--model") == "scripted:delay=0"


def test_replicas_join_into_one_comma_list_with_the_model_once():
    got = join_specs(["http://a:8000/v1#org/m", "http://b:8000/v1#org/m", "http://c:8000/v1"], "--model")
    assert got == "http://a:8000/v1,http://b:8000/v1,http://c:8000/v1#org/m"


@pytest.mark.parametrize("values,words", [
    (["smollm2-135m", "http://b:8000/v1"], "only server URLs"),
    (["http://a:8000/v1#x", "http://b:8000/v1#y"], "different models"),
])
def test_values_that_are_not_replicas_of_one_model_are_refused(values, words):
    with pytest.raises(CLIError, match=words) as e:
        join_specs(values, "--writer")
    assert "--writer" in str(e.value)


def test_the_flags_are_repeatable_on_both_batch_commands():
    p = build_parser()
    a = p.parse_args(["reer", "run", "--input", "i", "--out", "o", "--model", "http://a/v1", "--model", "http://b/v1"])
    assert a.model == ["http://a/v1", "http://b/v1"]
    a = p.parse_args(["r2", "run", "--input", "i", "--out", "o", "--writer", "http://a/v1", "--judge", "http://b/v1",
                      "--judge", "http://c/v1"])
    assert a.writer == ["http://a/v1"] and a.judge == ["http://b/v1", "http://c/v1"]
