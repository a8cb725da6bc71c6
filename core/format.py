"""The assistant-turn contract and the scoring templates: the one place the think block is spelled.

Knows the assistant turn every trajectory becomes, in the export, in training, in the quality
filters and in R2's records:

    <think>\\n{z}\\n</think>\\n{y}          (z and y stripped; no thinking gives an empty block)

`assistant_turn` writes it, `split_assistant_turn` reads it back, `answer_part` keeps what
follows the think block. `reserved_tag` finds what z, y (and x) may not hold: a think tag or a
chat-template special token (`RESERVED_RE`); import refuses such text and training does too.

Knows the scoring templates, i.e. how query x, thinking z and answer y are laid out as one text
for core.models.scoring (only y's tokens are scored):
- `train` (the default): the model's chat template with user = x and the generation prompt,
  then the assistant turn above, exactly the text the trainer learns. REER optimises z under it.
- `chat`: as `train`, but y wrapped in answer tags: `<think>\\n{z}\\n</think>\\n<answer>\\n{y}`.
  The layout before the assistant-turn contract; every REER run stored before then was scored with it under this
  name, and resumes with it (docs/assistant-turn.md has the measurement behind the change).
- `none`: x + z + y exactly as given, no chat template, nothing added or removed.

Does not know tokenizers, models or chat templates (LM.chat_text renders those), nor how
thinking is cut into segments (core.segments).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
# Text no query, thinking or answer may hold: the think tags (a second one would end or open the
# block inside the turn) and chat-template special tokens written as text (<|im_start|>,
# <|im_end|>, <|endoftext|>, <|eot_id|>, ...: tokenizers turn them into the real control token).
RESERVED_RE = re.compile(r"</?think>|<\|[^\s<>|]{1,64}\|>")


def reserved_tag(text: str) -> str | None:
    """The first think tag or chat-template special token in `text`, or None when it has none."""
    m = RESERVED_RE.search(text)
    return m.group(0) if m else None


def turn_head(thinking: str) -> str:
    """Everything of the assistant turn before the answer: the think block and the newline after it."""
    return f"{THINK_OPEN}\n{thinking.strip()}\n{THINK_CLOSE}\n"


def assistant_turn(thinking: str, answer: str) -> str:
    """The assistant turn of a trajectory (module docstring): think block, then the answer."""
    return turn_head(thinking) + answer.strip()


def split_assistant_turn(text: str) -> tuple[str, str]:
    """(thinking, answer) of an assistant turn, both stripped; ("", text stripped) when it has
    no `</think>`. Inverse of `assistant_turn` on stripped inputs."""
    head, sep, tail = text.partition(THINK_CLOSE)
    if not sep:
        return "", text.strip()
    return head.replace(THINK_OPEN, "", 1).strip(), tail.strip()


def answer_part(text: str) -> str:
    """If `text` holds a think block, the answer after the last `</think>` (stripped); else `text` as is."""
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1].strip()
    return text


@dataclass(frozen=True)
class Template:
    """How x, z and y are laid out for scoring (module docstring)."""
    name: str  # the name stored in settings (ScoringConfig.template, ReerConfig.template)
    chat: bool  # x goes through the model's chat template as the user turn (else x is used as is)
    opening: str  # what follows the rendered chat prompt, before z
    bridge: str  # what follows z, before y
    strip: bool  # y is stripped of surrounding whitespace (the chat layouts), or used as given
    help: str  # one line for flags and forms


TEMPLATES: dict[str, Template] = {
    "train": Template("train", True, THINK_OPEN + "\n", "\n" + THINK_CLOSE + "\n", True,
                      "chat template, then the assistant turn exactly as trained: <think>\\nz\\n</think>\\ny"),
    "chat": Template("chat", True, THINK_OPEN + "\n", "\n" + THINK_CLOSE + "\n" + ANSWER_OPEN + "\n", True,
                     "as train, but y wrapped in <answer> tags (runs stored before the assistant-turn contract)"),
    "none": Template("none", False, "", "", False, "x + z + y exactly as given"),
}
DEFAULT_TEMPLATE = "train"
TEMPLATE_HELP = "how x, z, y are laid out: " + "; ".join(f"{t.name}: {t.help}" for t in TEMPLATES.values())


class UnknownTemplate(ValueError):
    """A scoring template name that is not in TEMPLATES."""


def template(name: str) -> Template:
    """The scoring template called `name`; UnknownTemplate names the choices."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise UnknownTemplate(f"template '{name}': use one of {', '.join(TEMPLATES)}") from None
