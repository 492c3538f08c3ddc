"""Standard input as UTF-8 text: invalid bytes are named as such, whatever the locale says.

``sys.stdin`` decodes with the locale's encoding (ASCII under ``LANG=C``) and
raises a bare ``UnicodeDecodeError`` mid-read. herd reads the bytes and decodes
them itself, so a prompt or text piped in is UTF-8 everywhere and a bad byte is
one line: ``standard input is not valid UTF-8 (byte 0xff at offset 3)``. A
``sys.stdin`` replaced by a text stream (an embedding program, a test) is read
as the text it already is.
"""

from __future__ import annotations

import sys

from herd.errors import HerdError


def decode_stdin(data: bytes) -> str:
    """``data`` read from standard input as text, or a one-line error naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HerdError(
            f"standard input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_stdin() -> str:
    """All of standard input as text."""
    stream = getattr(sys.stdin, "buffer", None)
    return sys.stdin.read() if stream is None else decode_stdin(stream.read())


def read_stdin_line() -> str:
    """The next line of standard input as text ('' at the end)."""
    stream = getattr(sys.stdin, "buffer", None)
    return sys.stdin.readline() if stream is None else decode_stdin(stream.readline())
