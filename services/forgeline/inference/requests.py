"""Requests of the inference service: Generate and Tokenize inputs, checked up front.

A request names a served model and gives exactly one input (a prompt, a conversation or
token ids); `validate()` reports every problem at once, each naming its field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from forgeline.client.exceptions import FieldViolation, InvalidArgument, Violations
from forgeline.inference.sampling import SamplingParams
from forgeline.v1 import inference_pb2


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation."""

    role: str
    content: str
    name: str | None = None

    def to_template(self) -> dict[str, str]:
        """The message as chat templates expect it."""
        message = {"role": self.role, "content": self.content}
        if self.name is not None:
            message["name"] = self.name
        return message


def _messages_from_pb(pb: inference_pb2.ChatMessages) -> tuple[ChatMessage, ...]:
    return tuple(
        ChatMessage(m.role, m.content, m.name if m.HasField("name") else None) for m in pb.messages
    )


def _messages_to_pb(messages: Sequence[ChatMessage]) -> inference_pb2.ChatMessages:
    out = inference_pb2.ChatMessages()
    for m in messages:
        message = out.messages.add(role=m.role, content=m.content)
        if m.name is not None:
            message.name = m.name
    return out


def _input_violations(
    prompt: str | None,
    messages: tuple[ChatMessage, ...] | None,
    token_ids: tuple[int, ...] | None,
    names: tuple[str, str, str],
) -> list[FieldViolation]:
    v = Violations()
    given = [x is not None for x in (prompt, messages, token_ids)]
    if sum(given) != 1:
        v.add("input", f"give exactly one of {', '.join(n for n in names if n)}")
    if messages is not None:
        v.check(bool(messages), f"{names[1]}.messages", "must not be empty")
        for i, m in enumerate(messages):
            v.check(bool(m.role), f"{names[1]}.messages[{i}].role", "must not be empty")
    if token_ids is not None:
        v.check(bool(token_ids), f"{names[2]}.ids", "must not be empty")
    return v.items


@dataclass(frozen=True)
class GenerateRequest:
    """A generation: one of `prompt`, `messages` or `prompt_token_ids`, and how to sample."""

    model: str
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    add_generation_prompt: bool = True

    @classmethod
    def from_pb(cls, pb: inference_pb2.GenerateRequest) -> GenerateRequest:
        """Builds a request from its protobuf form."""
        which = pb.WhichOneof("input")
        return cls(
            model=pb.model,
            prompt=pb.prompt if which == "prompt" else None,
            messages=_messages_from_pb(pb.messages) if which == "messages" else None,
            prompt_token_ids=(
                tuple(pb.prompt_token_ids.ids) if which == "prompt_token_ids" else None
            ),
            sampling=SamplingParams.from_pb(pb.sampling),
            request_id=pb.request_id,
            add_generation_prompt=(
                pb.add_generation_prompt if pb.HasField("add_generation_prompt") else True
            ),
        )

    def to_pb(self) -> inference_pb2.GenerateRequest:
        """Returns the protobuf form."""
        pb = inference_pb2.GenerateRequest(
            model=self.model,
            sampling=self.sampling.to_pb(),
            request_id=self.request_id,
            add_generation_prompt=self.add_generation_prompt,
        )
        if self.prompt is not None:
            pb.prompt = self.prompt
        elif self.messages is not None:
            pb.messages.CopyFrom(_messages_to_pb(self.messages))
        elif self.prompt_token_ids is not None:
            pb.prompt_token_ids.ids.extend(self.prompt_token_ids)
        return pb

    @property
    def input_field(self) -> str:
        """Name of the input field in use, for error messages."""
        if self.messages is not None:
            return "messages"
        if self.prompt_token_ids is not None:
            return "prompt_token_ids"
        return "prompt"

    def validate(self) -> None:
        """Checks the whole request before any work starts.

        Raises:
            InvalidArgument: every problem, each naming its field.
        """
        items = [] if self.model else [FieldViolation("model", "must not be empty")]
        items += _input_violations(
            self.prompt,
            self.messages,
            self.prompt_token_ids,
            ("prompt", "messages", "prompt_token_ids"),
        )
        items += self.sampling.violations()
        if items:
            raise InvalidArgument.from_violations(items)


@dataclass(frozen=True)
class TokenizeRequest:
    """Text or a conversation to tokenize exactly as Generate would."""

    model: str
    text: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    add_generation_prompt: bool = True

    @classmethod
    def from_pb(cls, pb: inference_pb2.TokenizeRequest) -> TokenizeRequest:
        """Builds a request from its protobuf form."""
        which = pb.WhichOneof("input")
        return cls(
            model=pb.model,
            text=pb.text if which == "text" else None,
            messages=_messages_from_pb(pb.messages) if which == "messages" else None,
            add_generation_prompt=(
                pb.add_generation_prompt if pb.HasField("add_generation_prompt") else True
            ),
        )

    def validate(self) -> None:
        """Checks that the request names a model and gives exactly one input.

        Raises:
            InvalidArgument: the model or the input is missing.
        """
        items = [] if self.model else [FieldViolation("model", "must not be empty")]
        items += _input_violations(self.text, self.messages, None, ("text", "messages", ""))
        if items:
            raise InvalidArgument.from_violations(items)

    def as_generate(self) -> GenerateRequest:
        """The equivalent generation request (for rendering the same prompt)."""
        return GenerateRequest(
            model=self.model,
            prompt=self.text,
            messages=self.messages,
            add_generation_prompt=self.add_generation_prompt,
        )
