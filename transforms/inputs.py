"""The input files of a run, fixed at launch, and how each is opened when read.

list_inputs() lists what --input matches once, at launch: each regular file with its size and
what identifies its content version (InputFile), and, for each match that cannot be read (a
directory named like an input, as Spark writes `c.jsonl/part-00000.jsonl`; a dangling symlink;
a FIFO or other special file; a file without read permission), the reason. The pipeline reads
exactly the listed files (never a new match at run time), and only the bytes each held at launch,
so `records_read` counts what the files held then. A file that is gone, shrunk, replaced by
something that is not a regular file, or not in the format its name says when it is read becomes
a dead letter naming it and what happened (open_listed raises InputProblem; iter_file_records
turns a read that breaks off into a dead letter): never a silent loss, never a hang.

Local matches are globbed here (Beam's local match silently leaves out directories and dangling
symlinks); gs:// and s3:// go through Beam's FileSystems.match, whose metadata gives the size and
the last update time (the version: an object rewritten in place gets a new one).
"""
from __future__ import annotations

import glob
import io
import os
import stat
from dataclasses import asdict, dataclass
from typing import IO

from transforms.records import DeadLetter, file_format, input_format

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int  # bytes at launch: what the run reads
    version: str  # local: mtime_ns; gs://, s3://: the store's last update time

    def to_dict(self) -> dict:
        return asdict(self)


class InputProblem(OSError):
    """A listed file that cannot be read as listed; the message says what happened."""


def is_local(path: str) -> bool:
    return "://" not in path


def _local_problem(path: str) -> tuple[os.stat_result | None, str | None]:
    """(stat, None) for a regular local file we may read, else (None, the reason)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return None, f"a symlink to {os.readlink(path)!r}, which does not exist"
        return None, "gone (it was matched, then removed)"
    except OSError as exc:
        return None, f"cannot be examined ({type(exc).__name__}: {exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return None, ("a directory, not a file (a directory of part files, as Spark writes, is read by "
                      "matching the files inside it, e.g. --input 'DIR/*.jsonl/part-*')")
    if stat.S_ISFIFO(info.st_mode):
        return None, "a FIFO (named pipe), not a regular file"
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file (a device or socket)"
    if not os.access(path, os.R_OK):
        return None, "not readable (permission denied)"
    return info, None


def list_inputs(pattern: str) -> tuple[list[InputFile], list[DeadLetter]]:
    """What pattern matches now: the readable files, and a file-level DeadLetter for each match
    that cannot be read. Raises ValueError for a match whose name is no known input format."""
    files, problems = [], []
    if is_local(pattern):
        for path in sorted(glob.glob(pattern)):
            input_format(path)
            info, reason = _local_problem(path)
            if reason:
                problems.append(DeadLetter(path, None, f"input file not read: {reason}", None))
            else:
                files.append(InputFile(os.path.abspath(path), info.st_size, str(info.st_mtime_ns)))
    else:
        from apache_beam.io.filesystems import FileSystems

        for meta in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
            input_format(meta.path)
            files.append(InputFile(meta.path, int(meta.size_in_bytes), repr(meta.last_updated_in_seconds)))
    return files, problems


class _LaunchBytes(io.RawIOBase):
    """The first `size` bytes of a stream: what the file held at launch. Fewer bytes before the
    end means it shrank while being read: an InputProblem (a dead letter), never a quiet end."""

    def __init__(self, stream: IO[bytes], size: int, path: str):
        self.stream, self.left, self.size, self.path = stream, size, size, path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            return 0
        data = self.stream.read(min(len(buffer), self.left))
        if not data:
            raise InputProblem(f"{self.path} shrank while being read: {self.size - self.left} of the "
                               f"{self.size} bytes it held at launch were there")
        buffer[:len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


def open_listed(item: InputFile) -> IO[bytes]:
    """A binary stream of what item held at launch, decompressed (decompressed()). Raises
    InputProblem when the file is gone, shrunk, not a regular file any more, unreadable, or not
    gzip though named so."""
    path = item.path
    if is_local(path):
        raw = _open_local(item)
    else:
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        try:
            raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # noqa: BLE001 - gone, permissions, network: one dead letter
            raise InputProblem(f"cannot be opened ({type(exc).__name__}: {exc})") from exc
    if input_format(path) == "parquet":
        return raw  # read through its footer, which needs seeks; a shrunk one was refused above
    stream = io.BufferedReader(_LaunchBytes(raw, item.size, path), buffer_size=1 << 20)
    try:
        return decompressed(stream, path)
    except InputProblem:
        stream.close()
        raise


def stream_compression(path: str, start: bytes) -> str | None:
    """The compression to read a file with, from its name (file_format) checked against its first
    bytes: a file named .gz must start with gzip's magic number (an empty one may not); a JSON Lines
    or CSV file whose name says no compression but which starts with it is read as gzip (text never
    starts with byte 0x1f). Raises InputProblem for a .gz that is not gzip. Labeling and training
    both read through here, so they accept and refuse the same files."""
    fmt, compression = file_format(path)
    if compression == "gzip" and start and not start.startswith(GZIP_MAGIC):
        raise InputProblem(f"named .gz but not gzip (it starts with {start[:2]!r}, gzip with {GZIP_MAGIC!r})")
    if compression is None and fmt != "parquet" and start.startswith(GZIP_MAGIC):
        return "gzip"
    return compression


def _decompressor(compression: str):
    """A fresh streaming decompressor (decompress(), eof, unused_data) for a non-gzip compression."""
    if compression == "bzip2":
        import bz2

        return bz2.BZ2Decompressor()
    if compression == "lzma":
        import lzma

        return lzma.LZMADecompressor()  # FORMAT_AUTO: .xz and .lzma alike
    if compression == "deflate":
        import zlib

        return zlib.decompressobj()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


class _Decompressing(io.RawIOBase):
    """What a streaming decompressor makes of a stream, stream after stream (as bzip2, xz and zstd
    tools write when files are concatenated). Its input ending inside a stream raises EOFError, as
    Python's gzip module does, where Beam's CompressedFile and zstandard's stream_reader stop quietly:
    a truncated file is a dead letter, never a silent loss."""

    def __init__(self, stream: IO[bytes], compression: str):
        self.stream, self.compression = stream, compression
        self.decompressor, self.pending, self.started = _decompressor(compression), b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            if self.decompressor.eof:
                rest = self.decompressor.unused_data or self.stream.read(1 << 16)
                if not rest:
                    return 0
                self.decompressor, self.started = _decompressor(self.compression), False
            else:
                rest = self.stream.read(1 << 16)
                if not rest:
                    if not self.started:
                        return 0  # an empty file
                    raise EOFError(f"{self.compression} stream ended before its end-of-stream marker")
            self.started = True
            try:
                self.pending = self.decompressor.decompress(rest)
            except Exception as exc:  # noqa: BLE001 - LZMAError, ZstdError, zlib.error: one kind for the readers
                raise OSError(f"not valid {self.compression} data ({type(exc).__name__}: {exc})") from exc
        count = min(len(buffer), len(self.pending))
        buffer[:count], self.pending = self.pending[:count], self.pending[count:]
        return count

    def close(self) -> None:
        self.stream.close()
        super().close()


def decompressed(stream: io.BufferedReader, path: str) -> IO[bytes]:
    """stream (peekable) as the bytes of its records, decompressed as stream_compression says: gzip
    through Python's gzip module, the others through _Decompressing; both raise EOFError on a
    truncated file. Raises InputProblem as stream_compression."""
    compression = stream_compression(path, stream.peek(2)[:2])
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression:
        return io.BufferedReader(_Decompressing(stream, compression), buffer_size=1 << 20)
    return stream


def _open_local(item: InputFile) -> IO[bytes]:
    path = item.path
    try:
        # O_NONBLOCK: a FIFO put in the file's place opens at once (and is refused below) instead of
        # blocking until some writer appears.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise InputProblem("gone since launch (listed, then removed before it was read)") from exc
    except OSError as exc:
        raise InputProblem(f"cannot be opened ({type(exc).__name__}: {exc.strerror or exc})") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputProblem("no longer a regular file (replaced since launch by a directory, FIFO or device)")
    if info.st_size < item.size:
        os.close(fd)
        raise InputProblem(f"shrunk since launch from {item.size} to {info.st_size} bytes: "
                           f"its records are not all there")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
