"""One declared schema per kind of file the scripts exchange (docs/FORMATS.md), checked on read.

Only what the readers rely on is declared; every other field passes through untouched, so the
files keep their documented format. Verdicts, indices and answers are strict: `"false"` is not
a boolean and `"3"` is not an index. `validate` turns the first problem into one line naming the
file and the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, model_validator

from sfteval.cli import UserError
from sfteval.records import SCHEMA_VERSION


class Loose(BaseModel):
    """Fields not declared here are kept as they are."""

    model_config = ConfigDict(extra="allow")


class Envelope(Loose):
    schema_version: Annotated[StrictInt, Field(ge=1, le=SCHEMA_VERSION)]
    kind: str
    metadata: dict[str, Any]


# ---------------------------------------------------------------- ifeval_responses


class ResponseRow(Loose):
    key: StrictInt
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any] | None]
    response: str

    @model_validator(mode="after")
    def one_kwargs_per_instruction(self) -> ResponseRow:
        if len(self.kwargs) != len(self.instruction_id_list):
            raise ValueError("instruction_id_list and kwargs differ in length")
        return self


class IfevalResponses(Envelope):
    kind: Literal["ifeval_responses"]
    responses: Annotated[list[ResponseRow], Field(min_length=1)]


# ---------------------------------------------------------------- ifeval_scores


class ScoredPrompt(Loose):
    key: StrictInt
    prompt: str
    response: str
    instruction_id_list: list[str]
    follow_instruction_list_strict: list[StrictBool]
    follow_instruction_list_loose: list[StrictBool]
    follow_all_strict: StrictBool
    follow_all_loose: StrictBool

    @model_validator(mode="after")
    def one_verdict_per_instruction(self) -> ScoredPrompt:
        n = len(self.instruction_id_list)
        if len(self.follow_instruction_list_strict) != n or len(self.follow_instruction_list_loose) != n:
            raise ValueError("its verdicts do not match its instructions in number")
        return self


class IfevalScores(Envelope):
    kind: Literal["ifeval_scores"]
    summary: dict[str, Any]
    per_prompt: Annotated[list[ScoredPrompt], Field(min_length=1)]


# ---------------------------------------------------------------- tinymmlu_results


Choice = Annotated[StrictInt, Field(ge=0, le=3)]


class MmluItem(Loose):
    idx: Annotated[StrictInt, Field(ge=0)]
    correct: StrictBool
    answer: Choice | None = None
    prediction: Choice | None = None
    logprobs: Annotated[list[StrictFloat | StrictInt], Field(min_length=4, max_length=4)] | None = None


class TinymmluResults(Envelope):
    kind: Literal["tinymmlu_results"]
    summary: dict[str, Any] | None = None  # the comparison recomputes everything from `items`
    items: Annotated[list[MmluItem], Field(min_length=1)]

    @model_validator(mode="after")
    def each_question_once(self) -> TinymmluResults:
        indices = [item.idx for item in self.items]
        if len(set(indices)) != len(indices):
            raise ValueError("a question (idx) appears twice")
        return self


SCHEMAS: dict[str, type[Envelope]] = {
    "ifeval_responses": IfevalResponses,
    "ifeval_scores": IfevalScores,
    "tinymmlu_results": TinymmluResults,
}


def describe_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def validate(document: Any, kind: str, path: Any) -> dict[str, Any]:
    """`document` itself when it is a valid `kind` file, else a one-line UserError."""
    try:
        SCHEMAS[kind].model_validate(document)
    except ValidationError as err:
        raise UserError(f"{path} is not a valid {kind} file ({describe_error(err)})") from None
    return document
