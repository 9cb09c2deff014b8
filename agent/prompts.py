"""Every prompt of the agent, in one place, overridable from the config (`agent.prompts`).

The verify, reconsider and rerank chats *extend* the answer chat instead of starting afresh: their
token prefix is the answer prompt, so a backend with a prefix cache (llama.cpp's saved states,
vLLM's prefix caching) computes only the few tokens each step adds.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from mcqa.agent.compute import PROGRAM_PROMPT, PROGRAM_SYSTEM
from mcqa.llm.base import Chat
from mcqa.prompts import ANSWER_SYSTEM, answer_chat
from mcqa.types import Item


class Prompts(BaseModel):
    """Templates with `str.format` fields. Options scored after each: letters, TRUE/FALSE, Yes/No."""

    model_config = ConfigDict(extra="forbid")

    system: str = ANSWER_SYSTEM
    cloze: str = "Answer the following question.\n\nQuestion: {question}\n\nReply with only the answer."
    verify: str = (
        "Verify the answer above. Work out the question yourself and check whether "
        "{letter}. {choice} is correct. Reply with only TRUE or FALSE."
    )
    reconsider: str = (
        "That answer was checked and judged wrong. Reconsider the question and choose the "
        "correct answer from the remaining options. Reply with only the letter ({letters})."
    )
    think: str = (
        "A student answered this question with {letter}. {choice}, which is wrong; the correct answer "
        "is {correct}. In one short sentence, describe the misconception that leads to answer {letter}."
    )
    rerank: str = (
        "A student answered this question with {letter}. {choice}, which is wrong. Does this "
        'misconception explain the student\'s answer: "{misconception}"? Reply with only Yes or No.'
    )

    program: str = PROGRAM_PROMPT  # the `compute` tool: {question}, {choices}
    program_system: str = PROGRAM_SYSTEM

    rerank_list: str = (
        "A student answered this question with {letter}. {choice}, which is wrong; the correct "
        "answer is {correct}. Which misconception most likely led to the student's answer?\n\n"
        "{candidates}\n\nReply with only the letter ({letters})."
    )


VERDICTS = ["TRUE", "FALSE"]
LIST_LETTERS = [chr(ord("A") + k) for k in range(26)]  # the listwise reranker's options
YES_NO = ["Yes", "No"]


def base_chat(item: Item, examples: Sequence[Item], prompts: Prompts) -> Chat:
    return answer_chat(item, examples, system=prompts.system)


def cloze_chat(item: Item, examples: Sequence[Item], prompts: Prompts) -> Chat:
    """The bare question (no lettered choices), so the reply scored is a choice's own text; solved
    examples come first as earlier turns, answered with their right choice's text."""
    chat: Chat = [{"role": "system", "content": prompts.system}]
    for example in examples:
        if example.answer is not None:
            chat += [
                {"role": "user", "content": prompts.cloze.format(question=example.question.strip())},
                {"role": "assistant", "content": example.choice(example.answer)},
            ]
    return chat + [{"role": "user", "content": prompts.cloze.format(question=item.question.strip())}]


def verify_chat(item: Item, examples: Sequence[Item], letter: str, prompts: Prompts) -> Chat:
    return base_chat(item, examples, prompts) + [
        {"role": "assistant", "content": letter},
        {"role": "user", "content": prompts.verify.format(letter=letter, choice=item.choice(letter))},
    ]


def reconsider_chat(item: Item, examples: Sequence[Item], rejected: list[str], prompts: Prompts) -> Chat:
    """The answer chat, then each rejected answer and the verdict against it, in order."""
    remaining = [x for x in item.letters if x not in rejected]
    chat = base_chat(item, examples, prompts)
    for letter in rejected:
        chat += [
            {"role": "assistant", "content": letter},
            {"role": "user", "content": prompts.reconsider.format(letters=", ".join(remaining))},
        ]
    return chat


def _wrong_answer_chat(item: Item, letter: str, prompts: Prompts, template: str, **fields) -> Chat:
    correct = f"{item.answer}. {item.choice(item.answer)}" if item.answer else "not given"
    return [
        {"role": "system", "content": prompts.system},
        {
            "role": "user",
            "content": f"Question: {item.question.strip()}\n\n"
            + "\n".join(f"{x}. {c}" for x, c in zip(item.letters, item.choices, strict=True))
            + ("" if not item.construct else f"\n\nTopic: {item.construct}")
            + "\n\n"
            + template.format(letter=letter, choice=item.choice(letter), correct=correct, **fields),
        },
    ]


def think_chat(item: Item, letter: str, prompts: Prompts) -> Chat:
    return _wrong_answer_chat(item, letter, prompts, prompts.think)


def rerank_chat(item: Item, letter: str, misconception: str, prompts: Prompts) -> Chat:
    """One candidate per chat; the question and wrong answer come first so candidates share a prefix."""
    return _wrong_answer_chat(item, letter, prompts, prompts.rerank, misconception=misconception)


def rerank_list_chat(item: Item, letter: str, misconceptions: list[str], prompts: Prompts) -> Chat:
    """All candidates of one wrong answer in one chat, lettered; the question first, so the wrong
    answers of one question share a prefix."""
    letters = LIST_LETTERS[: len(misconceptions)]
    candidates = "\n".join(f"{x}. {m}" for x, m in zip(letters, misconceptions, strict=True))
    return _wrong_answer_chat(
        item, letter, prompts, prompts.rerank_list, candidates=candidates, letters=", ".join(letters)
    )
