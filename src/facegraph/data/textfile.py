"""Text files of the sources (lists, CSV indexes, annotation tables) read as UTF-8, line by line.

Every source format is UTF-8 (a BOM is tolerated). A file in another encoding (a Latin-1 export of
``IMDb-Face.csv``, a ``identity_CelebA.txt`` saved by a Windows tool) stops with a one-line DataError naming the
file, the line and the offending byte, rather than a traceback or silently mis-decoded names: a wrong guess at the
encoding would change identity names, and so which photos belong together.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from facegraph.errors import DataError

CONVERT_HINT = "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


def _not_utf8(path: Path, line: int, raw: bytes, error: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); {CONVERT_HINT}")


def open_binary(path: str | Path, what: str) -> BinaryIO:
    """Open ``path`` for reading bytes; DataError naming ``what`` and the reason if it cannot be."""
    path = Path(path)
    try:
        return path.open("rb")
    except OSError as error:
        raise DataError(f"cannot read {what} {path}: {error.strerror or error}") from None


def decoded_lines(path: Path, handle: BinaryIO) -> Iterator[str]:
    """The lines of an open binary file decoded as UTF-8 (line endings kept, a leading BOM dropped)."""
    try:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _not_utf8(path, number, raw, error) from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None


def read_lines(path: str | Path, what: str) -> list[str]:
    """All lines of a UTF-8 text file, without line endings; DataError naming file and line otherwise."""
    path = Path(path)
    with open_binary(path, what) as handle:
        return [line.rstrip("\r\n") for line in decoded_lines(path, handle)]


def check_utf8_name(path: Path) -> str | None:
    """None if the file name of ``path`` is valid text, else a one-line explanation (Linux keeps raw bytes)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return f"{ascii(str(path))}: the name is not UTF-8 text; rename it"
    return None
