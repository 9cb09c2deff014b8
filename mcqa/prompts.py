"""The multiple-choice prompt and the options it is scored over, side by side (as simple-evals keeps
its template and answer regex together): change one and you see the other.

The letter is read from the option log-probabilities at the answer position, never parsed out of
free text, so there is no answer regex to go wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcqa.llm.base import Chat
from mcqa.types import Item

ANSWER_SYSTEM = "You are an expert problem solver. You answer multiple-choice questions accurately."
ANSWER_USER = (
    "Answer the following multiple-choice question.\n\n"
    "Question: {question}\n\n{choices}\n\n"
    "Reply with only the letter ({letters}) of the correct answer."
)


def format_choices(item: Item) -> str:
    """'A. first\\nB. second ...'."""
    return "\n".join(f"{letter}. {text}" for letter, text in zip(item.letters, item.choices, strict=True))


def answer_message(item: Item) -> str:
    return ANSWER_USER.format(
        question=item.question.strip(), choices=format_choices(item), letters=", ".join(item.letters)
    )


def answer_chat(item: Item, examples: Sequence[Item] = (), system: str = ANSWER_SYSTEM) -> Chat:
    """The chat that asks for `item`'s letter; solved `examples` come first as earlier turns (few-shot)."""
    chat: Chat = [{"role": "system", "content": system}]
    for example in examples:
        if example.answer is None:
            continue
        chat.append({"role": "user", "content": answer_message(example)})
        chat.append({"role": "assistant", "content": example.answer})
    chat.append({"role": "user", "content": answer_message(item)})
    return chat
