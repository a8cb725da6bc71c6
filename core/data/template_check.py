"""Does the think block survive a chat template? Render exported chat records and compare.

Knows: a chat record ({"id", "messages": [...]} as core.data.export writes it, each assistant
turn in core.format's layout) rendered with a tokenizer's chat template must contain each
assistant turn verbatim, and must still contain it after encoding and decoding the rendered
text. Several templates (Qwen3, DeepSeek-R1) strip think blocks from assistant turns; others
trim or rewrite whitespace. A record is reported as "dropped" when its think block is gone from
the rendering, "mangled" when the block is there but its text changed (or tokenization changed
it), "error" when the template failed to render. By default the tokenizer is the built-in
model's (core.models.hf.builtin_model_dir()).

Does not know: export formats (core.data.export) or training (the training backend).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.format import THINK_CLOSE, THINK_OPEN, split_assistant_turn


@dataclass(frozen=True)
class TemplateIssue:
    id: str  # the record's id
    problem: str  # "dropped" | "mangled" | "error"
    detail: str  # what was seen

    def __str__(self) -> str:
        return f"{self.id}: think block {self.problem} ({self.detail})"


def load_tokenizer(model_dir: str | None = None):
    """The tokenizer of `model_dir` (a local folder), or the built-in model's."""
    from transformers import AutoTokenizer

    if model_dir is None:
        from core.models.hf import builtin_model_dir

        model_dir = str(builtin_model_dir())
    return AutoTokenizer.from_pretrained(model_dir)


def _thinking(content: str) -> str | None:
    if THINK_OPEN not in content or THINK_CLOSE not in content:
        return None
    return split_assistant_turn(content)[0]


def check_record(record: dict, tokenizer) -> TemplateIssue | None:
    """The issue of one chat record under `tokenizer`'s template, or None when every assistant
    turn (think block included) survives rendering and tokenization."""
    rid = str(record.get("id"))
    try:
        rendered = tokenizer.apply_chat_template(record["messages"], tokenize=False)
    except Exception as e:  # templates raise jinja errors of many types
        return TemplateIssue(rid, "error", f"the template failed: {e}")
    for turn in record["messages"]:
        if turn.get("role") != "assistant":
            continue
        content = turn["content"]
        if content in rendered:
            ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
            if content not in tokenizer.decode(ids):
                return TemplateIssue(rid, "mangled", "encoding and decoding the rendered text changes the turn")
            continue
        thinking = _thinking(content)
        if thinking is None:
            return TemplateIssue(rid, "mangled", "the assistant turn is not rendered verbatim")
        wanted = sum(m["content"].count(THINK_OPEN) for m in record["messages"])
        if rendered.count(THINK_OPEN) < wanted:
            return TemplateIssue(rid, "dropped", "the template removed the think block")
        if thinking not in rendered:
            return TemplateIssue(rid, "mangled", "the think block is there but its text is changed")
        return TemplateIssue(rid, "mangled", "the think block survives but the turn's text around it is changed")
    return None


def check_records(records: list[dict], tokenizer=None) -> list[TemplateIssue]:
    """Issues of every record whose think block is dropped or mangled (tokenizer: built-in by default)."""
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    return [i for i in (check_record(r, tok) for r in records) if i is not None]
