"""The few records every part of mcqa passes around: Item in, Prediction out.

Kept in one short module (as openai/simple-evals keeps its interfaces) so that adapters, the agent,
the evaluator and the Kaggle writers agree on one shape and nobody re-invents a dict layout.
"""

from __future__ import annotations

import string
import warnings
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

LETTERS = string.ascii_uppercase

# `construct` (Eedi's ConstructName) is the natural field name; it shadows pydantic's deprecated
# `BaseModel.construct` classmethod, which mcqa never uses.
warnings.filterwarnings("ignore", message='Field name "construct"', category=UserWarning)


def letter(index: int) -> str:
    """The letter of the choice at `index` (0 -> 'A')."""
    return LETTERS[index]


def index_of(letter_: str) -> int:
    """The position of choice `letter_` ('A' -> 0)."""
    return LETTERS.index(letter_)


class Item(BaseModel):
    """One multiple-choice question, whatever dataset it came from.

    `misconceptions` maps a choice letter to the misconception ids labelled for it (Eedi tags each
    distractor; MAP tags the student's chosen answer). `chosen` is the answer a student picked, for
    datasets built from student responses (MAP); it is None for plain benchmarks.
    """

    id: str
    question: str
    choices: list[str]
    answer: str | None = None
    subject: str | None = None
    construct: str | None = None  # type: ignore[assignment]  # shadows BaseModel.construct (see the top)
    chosen: str | None = None
    misconceptions: dict[str, list[str]] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("choices")
    @classmethod
    def _enough_choices(cls, choices: list[str]) -> list[str]:
        if len(choices) < 2:
            raise ValueError(f"needs at least 2 choices, got {len(choices)}")
        if len(choices) > len(LETTERS):
            raise ValueError(f"at most {len(LETTERS)} choices, got {len(choices)}")
        return choices

    @model_validator(mode="after")
    def _letters_in_range(self) -> Item:
        for name in ("answer", "chosen"):
            value = getattr(self, name)
            if value is not None and value not in self.letters:
                raise ValueError(f"{name} {value!r} is not one of the choice letters {''.join(self.letters)}")
        for key in self.misconceptions:
            if key not in self.letters:
                raise ValueError(f"misconception label for {key!r}, which is not a choice letter")
        return self

    @property
    def letters(self) -> list[str]:
        return [letter(i) for i in range(len(self.choices))]

    def choice(self, letter_: str) -> str:
        """The text of choice `letter_`."""
        return self.choices[index_of(letter_)]


class Misconception(BaseModel):
    """One entry of a misconception catalogue (Eedi's mapping, MAP's labels).

    Ids are strings: Eedi numbers them ("1672"), MAP names them ("Incomplete"), and Kaggle
    submissions write them back as text either way.
    """

    id: str
    name: str


class Prediction(BaseModel):
    """What the solver says about one item.

    `option_probs` keeps the probability of every choice (not only the argmax), so calibration,
    position bias and margins can be studied after the run. `misconceptions` maps a wrong choice's
    letter to its ranked misconception ids (best first) and `misconception_scores` to their scores.
    `verification` is P(TRUE) of the answer, or 1.0 / 0.0 where a tool named a choice (it agrees or
    not); `tool` is that tool's record (mcqa.agent.tools.ToolRecord: program, status, output, letter).
    """

    item_id: str
    answer: str | None = None
    option_probs: dict[str, float] = Field(default_factory=dict)
    correct: bool | None = None
    verification: float | None = None
    flips: list[str] = Field(default_factory=list)
    misconceptions: dict[str, list[str]] = Field(default_factory=dict)
    misconception_scores: dict[str, list[float]] = Field(default_factory=dict)
    tool: dict[str, Any] | None = None
    trace_id: str | None = None
    error: str | None = None
