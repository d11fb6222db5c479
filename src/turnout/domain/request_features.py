"""What a chat request needed, as bits in one integer: recorded on each ledger row, so that where
else a provider's traffic could go (spend/exit_report.py) is answered from history without keeping
prompts. A bit is named by what a deployment must be able to do for the request."""

from __future__ import annotations

from turnout.domain.chat import ChatRequest

STREAMING = 1
TOOLS = 2  # tools (or legacy functions) declared
TOOL_CHOICE = 4  # a tool call required, or one named
STRUCTURED = 8  # response_format json_schema
JSON_MODE = 16  # response_format json_object
IMAGES = 32
AUDIO = 64  # audio in, or asked for out
REASONING = 128  # reasoning_effort set
SEVERAL_CHOICES = 256  # n > 1
LOGPROBS = 512

NAMES: dict[int, str] = {
    STREAMING: "streaming",
    TOOLS: "tools",
    TOOL_CHOICE: "tool_choice",
    STRUCTURED: "structured_outputs",
    JSON_MODE: "json_mode",
    IMAGES: "images",
    AUDIO: "audio",
    REASONING: "reasoning",
    SEVERAL_CHOICES: "n",
    LOGPROBS: "logprobs",
}


def request_features(request: ChatRequest) -> int:
    """The bits of what `request` needs (0: plain text chat). One test per optional field; the
    messages are looked at only for list contents (images, audio)."""
    bits = STREAMING if request.stream else 0
    if request.tools or request.functions:
        bits |= TOOLS
    choice = request.tool_choice
    if choice is not None and (choice == "required" or not isinstance(choice, str)):
        bits |= TOOL_CHOICE
    fmt = request.response_format
    if fmt is not None:
        if fmt.type == "json_schema":
            bits |= STRUCTURED
        elif fmt.type == "json_object":
            bits |= JSON_MODE
    for message in request.messages:
        content = message.content
        if content.__class__ is list:  # (on every request's path: no isinstance, no getattr)
            for part in content:
                kind = part.type
                if kind == "image_url":
                    bits |= IMAGES
                elif kind == "input_audio":
                    bits |= AUDIO
    if request.audio is not None or (request.modalities and "audio" in request.modalities):
        bits |= AUDIO
    if request.reasoning_effort is not None:
        bits |= REASONING
    if request.n is not None and request.n > 1:
        bits |= SEVERAL_CHOICES
    if request.logprobs:
        bits |= LOGPROBS
    return bits


def feature_names(bits: int) -> list[str]:
    return [name for bit, name in NAMES.items() if bits & bit]
