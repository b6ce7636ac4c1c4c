"""Opening a CSV file safely: encoding, dialect, and a structural check before anything is written.

``inspect_file`` reads the whole file once before the import starts (a streaming pass, about
2 s per million rows) and refuses a malformed file with an :class:`ImportFileError` naming the line:
empty or binary files, spreadsheets saved in another format, unbalanced quotes, a field longer
than the parser's hard limit, a header without rows. Nothing is written for a refused file, so a
half-imported file never needs cleaning up. Problems confined to one line (a wrong number of
fields, a value too long, an invalid email) are *row* errors instead: the row is reported and the
others are imported.

Encodings: a BOM decides (UTF-8, UTF-16 LE/BE); without one the file is UTF-8 when every byte
decodes as UTF-8, else Windows-1252 (what Excel writes on Western Windows) when that decodes, else
Latin-1 (which decodes anything). Delimiters: comma, semicolon or tab, found by
:class:`csv.Sniffer` and checked against the first lines (the candidate that splits them into
the most consistent number of fields wins); Excel's ``sep=;`` first line is honoured.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadflow.errors import InvalidInput

# The parser's hard limit: a longer field means the file is broken (usually a quote that is never
# closed swallowed the rest of the file). csv's default is 128 KiB.
HARD_FIELD_LIMIT = 1 << 20
# Values longer than this fail their row (the report names the column).
MAX_FIELD_CHARS = 32_768
DELIMITERS = (",", ";", "\t")
_SAMPLE = 64 * 1024
_BLOCK = 1 << 20

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or another ZIP archive"),
    (b"\xd0\xcf\x11\xe0", "an old-style Excel workbook (.xls)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3", "an SQLite database"),
)


class ImportFileError(InvalidInput):
    """The file cannot be imported at all; nothing was written. HTTP 422, CLI exit code 2."""

    code = "invalid_file"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        text = f"line {line}: {message}" if line is not None else message
        err: dict[str, Any] = {"loc": ["file"], "msg": text}
        if line is not None:
            err["line"] = line
        super().__init__("file", text, line=line, errors=[err])
        self.line = line


@dataclass(frozen=True)
class FileInfo:
    path: Path  # the file to read (a UTF-8 copy for UTF-16 and CR-only files)
    original: Path
    encoding: str  # Python codec name
    encoding_label: str  # for people
    delimiter: str
    header: list[str]
    header_lines: int  # physical lines before the first data record (header, sep=, blanks)
    rows: int  # data records (blank lines not counted)
    size: int
    chunks: tuple[Chunk, ...] = ()

    @property
    def transcoded(self) -> bool:
        return self.path != self.original

    def dialect(self) -> dict[str, Any]:
        return {"delimiter": self.delimiter, "quotechar": '"', "doublequote": True, "strict": True}


def _line_at(data: bytes, pos: int, before: int) -> int:
    return before + data.count(b"\n", 0, pos) + 1


def detect_encoding(path: Path) -> tuple[str, str, bool]:
    """(codec, label, old-Mac line ends: CR only). Raises ImportFileError for empty, binary and
    non-CSV files."""

    with path.open("rb") as f:
        head = f.read(_SAMPLE)
        if not head.strip(b" \t\r\n\xef\xbb\xbf\xff\xfe\x00"):
            raise ImportFileError("the file is empty")
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise ImportFileError(f"this is {what}, not a CSV file; save or export it as CSV first")
        if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
            raise ImportFileError("UTF-32 files are not supported; save the file as UTF-8")
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            codec = "utf-16"
            text = head.decode(codec, errors="replace")
            _check_text(text)
            return codec, "UTF-16 (BOM)", False
        utf8_bom = head.startswith(b"\xef\xbb\xbf")
        # Whole-file pass: NUL bytes (binary data), and whether every byte decodes as UTF-8.
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        utf8 = True
        lines_before = 0
        crs = 0
        while block := f.read(_BLOCK):
            crs += block.count(b"\r")
            nul = block.find(b"\x00")
            if nul >= 0:
                raise ImportFileError(
                    "the file contains binary data (a NUL byte), it is not a text CSV file "
                    "(UTF-16 files need a byte order mark)",
                    line=_line_at(block, nul, lines_before),
                )
            if utf8:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    if utf8_bom:
                        raise ImportFileError(
                            "the file starts with a UTF-8 byte order mark but is not valid UTF-8",
                            line=_line_at(block, 0, lines_before),
                        ) from None
                    utf8 = False
            lines_before += block.count(b"\n")
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
        if utf8:
            codec, label = ("utf-8-sig", "UTF-8 (BOM)") if utf8_bom else ("utf-8", "UTF-8")
        else:
            codec, label = "cp1252", "Windows-1252"
            f.seek(0)
            cp_decoder = codecs.getincrementaldecoder("cp1252")()
            try:
                while block := f.read(_BLOCK):
                    cp_decoder.decode(block)
            except UnicodeDecodeError:
                codec, label = "latin-1", "Latin-1"
    _check_text(head.decode(codec, errors="replace"))
    return codec, label, crs > 0 and lines_before == 0


def _check_text(sample: str) -> None:
    """Refuse text that is mostly control characters (a binary file without NUL bytes)."""

    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\r\n") + sample.count("\x00")
    if controls > max(8, len(sample) // 100):
        raise ImportFileError("the file contains binary data, it is not a text CSV file")


def _score(sample: str, delimiter: str) -> tuple[float, int]:
    """(share of the sample's records with the header's field count, header width)."""

    reader = csv.reader(io.StringIO(sample), delimiter=delimiter, quotechar='"', doublequote=True)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= 50:
                break
    except csv.Error:
        pass
    if not rows:
        return 0.0, 0
    width = len(rows[0])
    same = sum(1 for r in rows if len(r) == width)
    return same / len(rows), width


def sniff_delimiter(sample: str) -> str:
    try:
        sniffed: str | None = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = None
    best, best_score = ",", (-1, -1.0, -1, -1)
    for d in DELIMITERS:
        consistency, width = _score(sample, d)
        # More than one column first, then consistent rows, then the sniffer's choice, then width.
        score = (int(width > 1), consistency, int(d == sniffed), width)
        if score > best_score:
            best, best_score = d, score
    return best


def _dedupe_header(cells: list[str]) -> list[str]:
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        name = cell.strip().lstrip("\ufeff").strip() or f"column {i + 1}"
        n = seen.get(name.lower(), 0)
        seen[name.lower()] = n + 1
        out.append(name if n == 0 else f"{name} ({n + 1})")
    return out


def _csv_problem(exc: csv.Error, start: int, current: int) -> ImportFileError:
    msg = str(exc)
    if "field larger than field limit" in msg:
        return ImportFileError(
            f"a field is longer than {HARD_FIELD_LIMIT:,} characters: most likely a quote opened "
            "on this line is never closed",
            line=start,
        )
    if "unexpected end of data" in msg or "EOF" in msg:
        return ImportFileError(
            "a quoted field opened on this line is never closed (unbalanced quote)", line=start
        )
    if "expected after" in msg:
        return ImportFileError(
            'a quote inside a quoted field must be doubled ("") and a closing quote must be '
            f"followed by the delimiter ({msg})",
            line=current,
        )
    return ImportFileError(f"the line cannot be read as CSV ({msg})", line=current)


def _decoded_lines(lines: Iterable[bytes], encoding: str) -> Iterator[str]:
    """Lines split at LF only (so byte offsets of records are known), decoded."""

    for line in lines:
        yield line.decode(encoding)


def _transcode(path: Path, encoding: str, work_dir: Path | None) -> Path:
    """A UTF-8 copy with LF line ends, for UTF-16 files and old-Mac (CR-only) files."""

    fd, name = tempfile.mkstemp(prefix="leadflow-import-", suffix=".csv", dir=work_dir)
    with (
        os.fdopen(fd, "w", encoding="utf-8", newline="") as out,
        path.open("r", encoding=encoding, newline=None) as src,
    ):
        try:
            while block := src.read(_BLOCK):
                out.write(block)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"the file is not valid {encoding} ({exc.reason})") from None
    return Path(name)


@dataclass(frozen=True)
class Chunk:
    """A run of whole records: bytes [start, end) of the file, the first starting on ``line``."""

    start: int
    end: int
    line: int
    records: int


def inspect_file(path: Path, *, chunk_size: int = 5000, work_dir: Path | None = None) -> FileInfo:
    """Check the whole file and describe it, cut into chunks of ``chunk_size`` records; raises
    ImportFileError naming the line. A UTF-16 or CR-only file is first copied to UTF-8 in
    ``work_dir`` (FileInfo.path is then that copy; the caller deletes it)."""

    csv.field_size_limit(HARD_FIELD_LIMIT)
    if not path.is_file():
        raise ImportFileError(f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ImportFileError("the file is empty")
    encoding, label, cr_only = detect_encoding(path)
    source = path
    if encoding == "utf-16" or cr_only:
        source = _transcode(path, encoding, work_dir)
        encoding = "utf-8"
    try:
        return _inspect(source, path, encoding, label, size, chunk_size)
    except BaseException:
        if source != path:
            source.unlink(missing_ok=True)
        raise


def _inspect(source: Path, original: Path, encoding: str, label: str, size: int, chunk_size: int) -> FileInfo:
    with source.open("r", encoding=encoding, newline="") as f:
        sample = f.read(_SAMPLE)
    first = sample.partition("\n")[0].strip().lstrip("\ufeff")
    if first.lower().startswith("sep=") and len(first) == 5:
        delimiter = first[4]
        if delimiter not in DELIMITERS:
            raise ImportFileError(f"unsupported delimiter {delimiter!r} in the sep= line", line=1)
        skip = 1
    else:
        if len(sample) == _SAMPLE and "\n" in sample:
            sample = sample[: sample.rfind("\n") + 1]
        delimiter = sniff_delimiter(sample)
        skip = 0

    offset = 0
    chunks: list[Chunk] = []

    def lines(fb: Iterable[bytes]) -> Iterator[str]:
        nonlocal offset
        for i, line in enumerate(fb):
            offset += len(line)
            yield line.decode("utf-8-sig" if i == 0 and encoding.startswith("utf-8") else encoding)

    with source.open("rb") as fb:
        reader = csv.reader(lines(fb), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
        prev = 0
        header: list[str] | None = None
        header_lines = 0
        rows = 0
        chunk_start = chunk_line = chunk_records = 0
        try:
            before = offset
            for record in reader:
                start, end = prev + 1, reader.line_num
                prev = end
                record_start, before = before, offset
                if start <= skip or not record or (len(record) == 1 and not record[0].strip()):
                    if header is None:
                        header_lines = end
                    continue
                if header is None:
                    header = _dedupe_header(record)
                    header_lines = end
                    if end > start:
                        raise ImportFileError(
                            "the header runs over several lines: a quote in it is not closed", line=start
                        )
                    continue
                rows += 1
                if end > start and len(record) != len(header):
                    raise ImportFileError(
                        f"the quoted field opened on this line runs to line {end} and the record has "
                        f"{len(record)} fields where the header has {len(header)}: check for an "
                        "unbalanced quote",
                        line=start,
                    )
                if chunk_records == 0:
                    chunk_start, chunk_line = record_start, start
                chunk_records += 1
                if chunk_records >= chunk_size:
                    chunks.append(Chunk(chunk_start, offset, chunk_line, chunk_records))
                    chunk_records = 0
        except csv.Error as exc:
            raise _csv_problem(exc, prev + 1, reader.line_num) from None
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"the file is not valid {label} ({exc.reason})", line=prev + 1) from None
    if chunk_records:
        chunks.append(Chunk(chunk_start, offset, chunk_line, chunk_records))
    if header is None:
        raise ImportFileError("the file has no header line (it holds only blank lines)")
    if rows == 0:
        raise ImportFileError("the file has a header line but no data rows", line=header_lines)
    return FileInfo(
        path=source,
        original=original,
        encoding=encoding,
        encoding_label=label,
        delimiter=delimiter,
        header=header,
        header_lines=header_lines,
        rows=rows,
        size=size,
        chunks=tuple(chunks),
    )


def read_chunk(info: FileInfo, chunk: Chunk) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields) for every data record of the chunk, in order."""

    csv.field_size_limit(HARD_FIELD_LIMIT)
    with info.path.open("rb") as fb:
        fb.seek(chunk.start)
        data = fb.read(chunk.end - chunk.start)
    reader = csv.reader(_decoded_lines(io.BytesIO(data), info.encoding), **info.dialect())
    prev = chunk.line - 1
    for record in reader:
        start = prev + 1
        prev = chunk.line - 1 + reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        yield start, record


def iter_records(info: FileInfo) -> Iterator[tuple[int, list[str]]]:
    """Every data record of the file, in order."""

    for chunk in info.chunks:
        yield from read_chunk(info, chunk)
