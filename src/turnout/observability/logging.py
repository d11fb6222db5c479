"""Process logging: text or JSON lines on stderr, with credentials redacted from every record and
control characters escaped, so that nothing a client sends (a path, a header, a model name) can
forge a log line."""

from __future__ import annotations

import logging
import re
import sys
import time
from types import TracebackType

import orjson

from turnout.observability.redaction import redact

# What could end a line or rewrite a terminal: C0 controls (CR, LF, ESC, ...), DEL, C1 controls
# (NEL U+0085 among them), the Unicode line and paragraph separators, and the bidirectional
# overrides and isolates that make text read differently from what it is.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Every line of a traceback or stack after a record's first line starts with this: a line that does
# not is the start of a record.
_CONTINUATION = "  | "

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` on one line: control characters written as escapes (`\\n`, `\\x1b`, `\\u2028`)."""
    return _CONTROL.sub(_escaped, text) if _CONTROL.search(text) else text


def _continued(text: str) -> str:
    """A multi-line block of our own (a traceback) kept readable, each line marked as a continuation
    and escaped within (an exception's message may quote what a client sent)."""
    return "\n".join(_CONTINUATION + escape_controls(line) for line in text.split("\n"))


class RedactingFilter(logging.Filter):
    """Render each record's message once, scrubbed (upstream messages may quote keys) and on one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escape_controls(redact(record.getMessage(), limit=4000).rstrip())
        record.args = None
        return True


class TextFormatter(logging.Formatter):
    """One line per record; a traceback follows on lines that start with `_CONTINUATION`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatException(self, ei: ExcInfo) -> str:
        return _continued(redact(super().formatException(ei), limit=8000))

    def formatStack(self, stack_info: str) -> str:
        return _continued(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),  # rendered, redacted and escaped by RedactingFilter
        }
        if record.exc_info:
            # JSON escapes newlines itself; the separators and other controls it leaves are escaped
            exception = redact(self.formatException(record.exc_info), limit=8000)
            doc["exception"] = "\n".join(escape_controls(line) for line in exception.split("\n"))
        return orjson.dumps(doc).decode()


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))
