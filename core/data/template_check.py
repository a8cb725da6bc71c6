"""What training refuses, and does the think block survive a chat template? Check chat records.

Knows what `train` accepts as a chat (`chat_problem`, the one definition core.train.data uses
to refuse a record): a list of system/user/assistant messages with string contents, the
assistant's last; every assistant turn in core.format's layout (at most one think block, at its
start, with an answer after it); no think tag outside an assistant turn's block and no
chat-template special token anywhere (core.format.reserved_tag). `check_record` reports a record
train would refuse as "refused", before rendering it.

Knows: a chat record ({"id", "messages": [...]} as core.export writes it, each assistant
turn in core.format's layout) rendered with a tokenizer's chat template must contain each
assistant turn verbatim, and must still contain it after encoding and decoding the rendered
text. Several templates (Qwen3, DeepSeek-R1) strip think blocks from assistant turns; others
trim or rewrite whitespace. A record is reported as "dropped" when its think block is gone from
the rendering, "mangled" when the block is there but its text changed (or tokenization changed
it), "error" when the template failed to render. By default the tokenizer is the built-in
model's (core.models.hf.builtin_model_dir()).

Does not know: export formats (core.export) or training (the training backend).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.format import RESERVED_RE, THINK_CLOSE, THINK_OPEN, split_assistant_turn

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class TemplateIssue:
    id: str  # the record's id
    problem: str  # "refused" (train would refuse it) | "dropped" | "mangled" | "error"
    detail: str  # what was seen

    def __str__(self) -> str:
        if self.problem == "refused":
            return f"{self.id}: train would refuse it ({self.detail})"
        return f"{self.id}: think block {self.problem} ({self.detail})"


def _turn_problem(content: str) -> str | None:
    """What is wrong with an assistant turn's think block and answer (core.format's layout), or None."""
    if content.count(THINK_CLOSE) > 1 or content.count(THINK_OPEN) > 1 or \
            (THINK_OPEN in content) != (THINK_CLOSE in content) or \
            (THINK_OPEN in content and not content.lstrip().startswith(THINK_OPEN)):
        return (f"broken think block: expected one '{THINK_OPEN}' ... '{THINK_CLOSE}' pair at the start, "
                "before the answer")
    if THINK_CLOSE in content and not split_assistant_turn(content)[1]:
        return f"no answer after '{THINK_CLOSE}'"
    return None


def chat_problem(messages) -> tuple[str, str] | None:
    """(field, what is wrong and the fix) for a chat that training refuses, or None when it trains:
    the one definition of what `train` refuses (core.train.data.parse_chat uses it)."""
    if not isinstance(messages, list) or len(messages) < 2:
        return "messages", "must be a list of at least two messages (user, then assistant)"
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            return where, 'must be an object {"role": ..., "content": ...}'
        if m.get("role") not in ROLES:
            return f"{where}.role", f"{m.get('role')!r} is not one of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return f"{where}.content", f"must be a string, got {type(m.get('content')).__name__}"
        if m["role"] == "system" and i > 0:
            return f"{where}.role", "a system message may only come first"
    last = len(messages) - 1
    if messages[-1]["role"] != "assistant":
        return f"messages[{last}].role", "the last message must be the assistant's (it is what the model learns to write)"
    if not any(m["role"] == "user" for m in messages[:-1]):
        return "messages", "no user message before the assistant's"
    if not messages[-1]["content"].strip():
        return f"messages[{last}].content", "is empty; nothing to learn"
    for i, m in enumerate(messages):
        content = m["content"]
        if m["role"] == "assistant":
            wrong = _turn_problem(content)
            if wrong:
                return f"messages[{i}].content", wrong
            content = content.replace(THINK_OPEN, "", 1).replace(THINK_CLOSE, "", 1)  # its own block is allowed
        tag = RESERVED_RE.search(content)
        if tag is not None:
            return (f"messages[{i}].content", f"contains {tag.group()!r}, a think tag or chat-template special "
                    "token that would break the turn; remove or reword it")
    return None


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
    """The issue of one chat record under `tokenizer`'s template, or None when train accepts it and
    every assistant turn (think block included) survives rendering and tokenization."""
    rid = str(record.get("id"))
    refused = chat_problem(record.get("messages"))
    if refused is not None:
        return TemplateIssue(rid, "refused", f"field '{refused[0]}': {refused[1]}")
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
    """Issues of every record train would refuse or whose think block is dropped or mangled
    (tokenizer: built-in by default)."""
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    return [i for i in (check_record(r, tok) for r in records) if i is not None]
