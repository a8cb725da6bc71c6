"""`bench reer` times the scoring phase over the same work on both sides (issue 24): the two
searches' filters may keep different candidates, so the plain loop replays the fast side's own
scoring requests (core.bench_replay.scoring_replay) instead of being timed on its own, different
calls (a run measured 0.66x there: the fast side had scored 5 sequences, the plain side 3). And the
writer's background work (CTranslate2's spare generator) is finished before a scoring call is timed,
and counted as generation, not scoring."""
from __future__ import annotations

from core.bench import ExactLengthLM, scoring_replay
from core.models.lm import ScoreRequest, TokenLogprobs


class Recorder:
    """Stands in for a model: records the requests it is asked to score."""

    name, max_length, has_fast_path = "recorder", 2048, False

    def __init__(self):
        self.calls = []

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        self.calls.append(([r.continuation for r in requests], precision, truncate))
        return [TokenLogprobs(["x"], [-1.0], 3) for _ in requests]


def _req(text: str) -> ScoreRequest:
    return ScoreRequest(context=("Task.", "Plan."), continuation=text)


def test_the_plain_loop_replays_exactly_the_fast_sides_scoring_calls():
    fast = ExactLengthLM(Recorder())
    fast.loglikelihood([_req("draft")], "fp32")
    fast.loglikelihood([_req("one"), _req("two")], "auto", "left")
    plain = Recorder()
    seconds = scoring_replay(plain, fast.scored)
    assert seconds >= 0.0
    # the same requests, call by call, in fp32 (the plain loop's arithmetic), with the same truncation
    assert plain.calls == [(["draft"], "fp32", "error"), (["one", "two"], "fp32", "left")]
    assert sum(len(r) for r, _, _ in fast.scored) == 3  # the sequences `bench reer` reports as scored


class Writer(Recorder):
    """A writer with background work (as CTranslate2's spare generator): `ready` waits for it."""

    def __init__(self):
        super().__init__()
        self.busy = True

    def ready(self):
        import time

        time.sleep(0.2)
        self.busy = False


def test_the_writers_background_work_is_finished_before_scoring_and_counted_as_generation():
    class Scorer(Recorder):
        def loglikelihood(self, requests, precision="fp32", truncate="error"):
            assert not writer.busy, "scored while the writer's background work still ran"
            return super().loglikelihood(requests, precision, truncate)

    writer = Writer()
    fast = ExactLengthLM(writer)
    scorer = ExactLengthLM(Scorer())
    scorer.settle = fast.settle  # what bench_reer does for a scorer apart
    scorer.loglikelihood([_req("one")])
    assert scorer.seconds["generate"] >= 0.2 and scorer.seconds["score"] < 0.2


def test_the_summary_says_scoring_was_timed_over_the_same_work_and_gives_the_cache_with_the_spare():
    """The printed table names the sequences both sides scored, and the prompt cache's gain with the
    spare generator's background work counted (the plain "on" time leaves it out: free only where
    cores idle; on 2 busy cores it was 1.42x without it and 1.19x with it)."""
    from core.bench_replay import regret_summary
    from studio.cli.bench import reer_summary

    phases = {f"{p}_{side}": 1.0 for p in ("draft", "candidates", "scoring", "search")
              for side in ("engine_s", "plain_s", "speedup")}
    cache = {f"prompt_cache_{p}_{k}": 1.0 for p in ("draft", "candidates") for k in ("off_s", "on_s", "speedup")}
    result = dict(phases, **cache, **regret_summary([]), engine_s=2.0, plain_s=2.0, speedup=1.0, items=1,
                  skipped=[], load_before=[1.0], load_after=[2.0], scorer="m", model="m", scoring_target="2.5x",
                  scoring_target_met=None, scored_sequences=11, prompt_cache_candidates_on_with_spare_s=73.2,
                  prompt_cache_candidates_speedup_with_spare=1.19)
    text = reer_summary(result, False)
    assert "over the same 11 sequences on both sides" in text
    assert "counting the spare generator's background work: on 73.2s: 1.19x" in text
