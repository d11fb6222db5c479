"""The canonical chat request (OpenAI Chat Completions shape), typed and validated.

Parsing is two-stage: the body is decoded once into a plain dict, which is forwarded faithfully
(unknown and vendor-specific fields included), and that dict is converted into these structs to
validate it and to give the rest of turnout typed access. Types, required fields and documented
ranges are checked here; enumerations that providers extend often (service tiers, reasoning
effort, verbosity) are left to the upstream to judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

import msgspec

from turnout.domain.errors import InvalidRequest
from turnout.domain.tokens import count_tokens
from turnout.domain.usage import Usage
from turnout.domain.validation import convert

# ----------------------------------------------------------------------------- content parts


class ImageURL(msgspec.Struct, frozen=True):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class InputAudio(msgspec.Struct, frozen=True):
    data: str
    format: Literal["wav", "mp3"]


class FileRef(msgspec.Struct, frozen=True):
    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None


class ContentPart(msgspec.Struct, frozen=True):
    """One part of a multi-part message. Known types are checked; unknown ones (a vendor's
    `video_url`, say) travel unchanged to OpenAI-compatible upstreams."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None
    file: FileRef | None = None
    refusal: str | None = None


_PART_FIELD = {
    "text": "text",
    "image_url": "image_url",
    "input_audio": "input_audio",
    "file": "file",
    "refusal": "refusal",
}

Content = str | list[ContentPart]

# ----------------------------------------------------------------------------- messages


class FunctionCall(msgspec.Struct, frozen=True):
    name: str
    arguments: str


class CustomCall(msgspec.Struct, frozen=True):
    name: str
    input: str


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    type: str
    function: FunctionCall | None = None
    custom: CustomCall | None = None


class AudioRef(msgspec.Struct, frozen=True):
    id: str


class SystemMessage(msgspec.Struct, tag_field="role", tag="system", frozen=True):
    content: Content
    name: str | None = None


class DeveloperMessage(msgspec.Struct, tag_field="role", tag="developer", frozen=True):
    content: Content
    name: str | None = None


class UserMessage(msgspec.Struct, tag_field="role", tag="user", frozen=True):
    content: Content
    name: str | None = None


class AssistantMessage(msgspec.Struct, tag_field="role", tag="assistant", frozen=True):
    content: Content | None = None
    refusal: str | None = None
    name: str | None = None
    audio: AudioRef | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(msgspec.Struct, tag_field="role", tag="tool", frozen=True):
    content: Content
    tool_call_id: str


class FunctionMessage(msgspec.Struct, tag_field="role", tag="function", frozen=True):
    content: str | None
    name: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage

# ----------------------------------------------------------------------------- tools and formats


class FunctionDefinition(msgspec.Struct, frozen=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class LegacyFunction(msgspec.Struct, frozen=True):
    """An entry of the deprecated `functions` list."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class TextFormat(msgspec.Struct, tag_field="type", tag="text", frozen=True, forbid_unknown_fields=True):
    pass


class Grammar(msgspec.Struct, frozen=True):
    definition: str
    syntax: Literal["lark", "regex"]


class GrammarFormat(msgspec.Struct, tag_field="type", tag="grammar", frozen=True, forbid_unknown_fields=True):
    grammar: Grammar


class CustomToolDefinition(msgspec.Struct, frozen=True):
    name: str
    description: str | None = None
    format: TextFormat | GrammarFormat | None = None


class Tool(msgspec.Struct, frozen=True):
    type: Literal["function", "custom"]
    function: FunctionDefinition | None = None
    custom: CustomToolDefinition | None = None


class NamedFunction(msgspec.Struct, frozen=True):
    name: str


class AllowedTools(msgspec.Struct, frozen=True):
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class ToolChoiceObject(msgspec.Struct, frozen=True):
    type: Literal["function", "custom", "allowed_tools"]
    function: NamedFunction | None = None
    custom: NamedFunction | None = None
    allowed_tools: AllowedTools | None = None


class JsonSchemaFormat(msgspec.Struct, frozen=True):
    name: str
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, frozen=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class Prediction(msgspec.Struct, frozen=True):
    type: Literal["content"]
    content: Content


class CustomVoice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str


class AudioOutput(msgspec.Struct, frozen=True):
    voice: str | CustomVoice
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class WebSearchLocation(msgspec.Struct, frozen=True):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


class UserLocation(msgspec.Struct, frozen=True):
    type: Literal["approximate"]
    approximate: WebSearchLocation


class WebSearchOptions(msgspec.Struct, frozen=True):
    user_location: UserLocation | None = None
    search_context_size: Literal["low", "medium", "high"] | None = None


# ----------------------------------------------------------------------------- the request

Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(ge=0, le=1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # what providers and stores can hold
ChoiceCount = Annotated[int, msgspec.Meta(ge=1, le=128)]
TopLogprobs = Annotated[int, msgspec.Meta(ge=0, le=20)]
SafetyIdentifier = Annotated[str, msgspec.Meta(max_length=64)]
LegacyFunctions = Annotated[list[LegacyFunction], msgspec.Meta(min_length=1, max_length=128)]


class ChatRequest(msgspec.Struct, frozen=True):
    """`POST /v1/chat/completions`, as documented by OpenAI. Unknown fields are not kept here;
    they stay in the raw body that is forwarded."""

    model: str
    messages: list[Message]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    stop: str | list[str] | None = None
    max_tokens: Int64 | None = None
    max_completion_tokens: Int64 | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Any] | None = None  # values checked in _check, so errors can name the key
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    user: str | None = None
    safety_identifier: SafetyIdentifier | None = None
    seed: Int64 | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    functions: LegacyFunctions | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    metadata: dict[str, Any] | None = None  # values checked in _check, so errors can name the key
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    audio: AudioOutput | None = None
    prediction: Prediction | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    web_search_options: WebSearchOptions | None = None

    @property
    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def output_token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def parse_chat_request(body: object) -> ChatRequest:
    """Validate a decoded JSON body; raise `InvalidRequest` naming the offending parameter."""
    request = convert(body, ChatRequest)
    _check(request)
    return request


def _check(request: ChatRequest) -> None:
    """What the types alone cannot say, in the order a client learns of it (the first problem wins).
    Each optional field is looked at only when present, so a plain request pays one test per field;
    paths for messages are built only when something is wrong."""
    if not request.messages:
        raise InvalidRequest(
            "'messages' must contain at least one message.", param="messages", code="empty_array"
        )
    _check_messages(request.messages)
    if request.stop is not None and isinstance(request.stop, list) and not 1 <= len(request.stop) <= 4:
        raise InvalidRequest("'stop' must hold between 1 and 4 sequences.", param="stop")
    if request.top_logprobs is not None and request.logprobs is not True:
        raise InvalidRequest("'top_logprobs' is only allowed when 'logprobs' is true.", param="top_logprobs")
    if request.logit_bias:
        _check_logit_bias(request.logit_bias)
    if request.metadata:
        _check_metadata(request.metadata)
    if request.prediction is not None and isinstance(request.prediction.content, list):
        _check_prediction_parts(request.prediction.content)
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(request, name)
        if value is not None and value < 1:
            raise InvalidRequest(f"'{name}' must be at least 1.", param=name)
    if request.tools is not None:
        _check_tools(request.tools)
    if isinstance(request.tool_choice, ToolChoiceObject):
        _check_tool_choice(request.tool_choice)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is None:
        raise InvalidRequest(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
            code="missing_required_parameter",
        )


def _check_messages(messages: list[Message]) -> None:
    """Each message's content parts and an assistant's tool calls (a legacy function message has
    neither to check)."""
    for i, message in enumerate(messages):
        kind = type(message)
        if kind is FunctionMessage:
            continue
        content = message.content
        if content.__class__ is list:
            _check_parts(content, i, kind)
        if kind is AssistantMessage and message.tool_calls:  # type: ignore[union-attr]
            for j, call in enumerate(message.tool_calls):  # type: ignore[union-attr]
                _check_tool_call(call, i, j)


def _check_logit_bias(logit_bias: dict[str, Any]) -> None:
    """Each bias an integer in [-100, 100]; the error names the token."""
    for token, bias in logit_bias.items():
        if type(bias) is not int:
            raise InvalidRequest(
                f"Invalid type for 'logit_bias.{token}': expected an integer.",
                param=f"logit_bias.{token}",
                code="invalid_type",
            )
        if not -100 <= bias <= 100:
            raise InvalidRequest(
                f"Invalid 'logit_bias.{token}': expected a value between -100 and 100, got {bias}.",
                param=f"logit_bias.{token}",
            )


def _check_metadata(metadata: dict[str, Any]) -> None:
    """Each metadata value a string; the error names the key."""
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise InvalidRequest(
                f"Invalid type for 'metadata.{key}': expected a string.",
                param=f"metadata.{key}",
                code="invalid_type",
            )


def _check_prediction_parts(parts: list[ContentPart]) -> None:
    """Predicted output given as parts: at least one, and text only."""
    if not parts:
        raise InvalidRequest(
            "'prediction.content' must not be an empty array.",
            param="prediction.content",
            code="empty_array",
        )
    for j, part in enumerate(parts):
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"Invalid value for 'prediction.content[{j}]': only text parts are allowed.",
                param=f"prediction.content[{j}]",
            )


def _check_tools(tools: list[Tool]) -> None:
    """Each tool carries the definition its `type` names (`function` for a function tool...)."""
    for i, tool in enumerate(tools):
        if getattr(tool, tool.type) is None:
            raise InvalidRequest(
                f"Missing required parameter: 'tools[{i}].{tool.type}'.",
                param=f"tools[{i}].{tool.type}",
                code="missing_required_parameter",
            )


def _check_tool_choice(tool_choice: ToolChoiceObject) -> None:
    """A named tool choice carries the member its `type` names."""
    kind_name = tool_choice.type
    if getattr(tool_choice, kind_name) is None:
        raise InvalidRequest(
            f"Missing required parameter: 'tool_choice.{kind_name}'.",
            param=f"tool_choice.{kind_name}",
            code="missing_required_parameter",
        )


_ALLOWED_PARTS: dict[type, tuple[str, ...]] = {
    SystemMessage: ("text",),
    DeveloperMessage: ("text",),
    ToolMessage: ("text",),
    AssistantMessage: ("text", "refusal"),
    UserMessage: ("text", "image_url", "input_audio", "file"),
}


def _check_parts(parts: list[ContentPart], i: int, role: type) -> None:
    if not parts:
        raise InvalidRequest(
            f"'messages[{i}].content' must not be an empty array.",
            param=f"messages[{i}].content",
            code="empty_array",
        )
    allowed = _ALLOWED_PARTS[role]
    for j, part in enumerate(parts):
        field = _PART_FIELD.get(part.type)
        if field is None:
            if role is UserMessage:
                continue  # a vendor extension: the upstream decides
            raise InvalidRequest(
                f"Invalid value for 'messages[{i}].content[{j}].type': {part.type!r} is not a content part "
                "type this message role accepts.",
                param=f"messages[{i}].content[{j}].type",
            )
        if getattr(part, field) is None:
            raise InvalidRequest(
                f"Missing required parameter: 'messages[{i}].content[{j}].{field}'.",
                param=f"messages[{i}].content[{j}].{field}",
                code="missing_required_parameter",
            )
        if part.type not in allowed:
            raise InvalidRequest(
                f"Invalid value for 'messages[{i}].content[{j}].type': {part.type!r} parts are not allowed "
                "in this message.",
                param=f"messages[{i}].content[{j}].type",
            )


def _check_tool_call(call: ToolCall, i: int, j: int) -> None:
    field = "function" if call.type == "function" else "custom" if call.type == "custom" else None
    if field is None:
        path = f"messages[{i}].tool_calls[{j}]"
        raise InvalidRequest(
            f"Invalid value for '{path}.type': expected 'function' or 'custom'.", param=f"{path}.type"
        )
    if getattr(call, field) is None:
        path = f"messages[{i}].tool_calls[{j}]"
        raise InvalidRequest(
            f"Missing required parameter: '{path}.{field}'.",
            param=f"{path}.{field}",
            code="missing_required_parameter",
        )


def message_has_images(message: Message) -> bool:
    content = getattr(message, "content", None)
    return isinstance(content, list) and any(p.type == "image_url" for p in content)


CHARS_PER_TOKEN = 4  # English text averages about four characters a token in OpenAI's tokenizers


def estimated_text_tokens(texts: Iterable[str]) -> int:
    """The tokens in `texts` by o200k_base (domain.tokens): OpenAI's count, an estimate for
    other providers' models."""
    return count_tokens(texts)


def estimated_prompt_tokens(request: ChatRequest) -> int:
    """A quick lower-bound estimate of the prompt's tokens from its text (images not counted), at
    four characters a token: cheap enough for routing to ask of every request and deployment.
    What a request is billed when its upstream reports no usage is `counted_prompt_tokens`."""
    return prompt_characters(request) // CHARS_PER_TOKEN


# The chat format's own tokens (OpenAI's documented count): each message's framing, and the
# priming of the answer.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_ANSWER = 3


def counted_prompt_tokens(request: ChatRequest) -> int:
    """The tokens of the prompt by o200k_base (domain.tokens): messages and tool calls, as
    `prompt_characters` reads them, with the chat format's framing as OpenAI's cookbook counts
    it (3 a message, its role, its name and 1 more, 3 priming the answer: the API reference's
    example is 19); images and tool definitions are not counted."""
    framing = TOKENS_PER_MESSAGE * len(request.messages) + TOKENS_PER_ANSWER
    names = [name for m in request.messages if (name := getattr(m, "name", None))]
    roles = [str(type(m).__struct_config__.tag) for m in request.messages]
    return count_tokens([*roles, *names, *_prompt_texts(request)]) + framing + len(names)


def counted_usage(request: ChatRequest, answer: Iterable[str] = ()) -> Usage:
    """turnout's count for an attempt its provider reported no usage for: the prompt's tokens and
    the answer's (the text it produced, every choice), both by tokenizer, marked estimated."""
    text = "".join(answer)  # pieces of a stream are counted as the text they make, not one by one
    output = count_tokens((text,)) if text else 0
    return Usage(input_tokens=counted_prompt_tokens(request), output_tokens=output, estimated=True)


def _prompt_texts(request: ChatRequest) -> Iterator[str]:
    for message in request.messages:
        content = getattr(message, "content", None)
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (p.text for p in content if p.text)
        for call in getattr(message, "tool_calls", None) or ():
            if call.function is not None:
                yield call.function.name
                yield call.function.arguments


def prompt_characters(request: ChatRequest) -> int:
    """The characters of the prompt's text: messages, tool calls (images not counted)."""
    chars = 0
    for message in request.messages:
        content = getattr(message, "content", None)
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.text) for p in content if p.text)
        for call in getattr(message, "tool_calls", None) or ():
            if call.function is not None:
                chars += len(call.function.arguments) + len(call.function.name)
    return chars
