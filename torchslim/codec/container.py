"""The compact container: a versioned header and checksummed sections.

Layout (integers are LEB128 varints, CRC32 little-endian)::

    b"TSLZ"                      magic
    u8 version
    varint n, n bytes            zlib-compressed JSON metadata (``sections``: names in order)
    u32 crc32                    of version, length and metadata bytes
    per section:
      varint n, n bytes          payload
      u32 crc32                  of the length and the payload

Overhead is a few bytes per section. Any damage (truncation, a flipped bit,
garbage) is reported as an ArtifactError naming the file and the section.
"""
from __future__ import annotations

import json
import struct
import zlib

from ..core.errors import ArtifactError
from .bitpack import Reader, varint
from .huffman import CorruptStream

__all__ = ["MAGIC", "CONTAINER_VERSION", "write_container", "read_container"]

MAGIC = b"TSLZ"
CONTAINER_VERSION = 2  # the newest version written and read; 2: the header may list "resized" layers
# (rebuilt from their weights' shapes), which a version-1 reader cannot rebuild. Files that need nothing
# newer are still written as version 1.


def _crc(*parts: bytes) -> bytes:
    c = 0
    for p in parts:
        c = zlib.crc32(p, c)
    return struct.pack("<I", c)


def write_container(meta: dict, sections: list[tuple[str, bytes]], *, version: int = 1) -> bytes:
    """Bytes of a container holding ``meta`` (JSON-serialisable) and the
    named section payloads, stamped with format ``version`` (the oldest that
    can read what ``meta`` uses)."""
    if not 1 <= version <= CONTAINER_VERSION:
        raise ValueError(f"write_container: version must be in 1..{CONTAINER_VERSION}, got {version}")
    meta = {**meta, "sections": [name for name, _ in sections]}
    blob = zlib.compress(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode(), 9)
    head = bytes([version]) + varint(len(blob))
    out = bytearray(MAGIC + head + blob + _crc(head, blob))
    for _, payload in sections:
        ln = varint(len(payload))
        out += ln + payload + _crc(ln, payload)
    return bytes(out)


def read_container(data: bytes, where: str = "artifact") -> tuple[dict, list[tuple[str, bytes]]]:
    """(metadata, [(name, payload), ...]); every checksum verified."""
    fix = "the file is corrupted or truncated; re-create it (torchslim.codec.save_compact)"
    if not data.startswith(MAGIC):
        raise ArtifactError(f"{where}: not a torchslim compact artifact (bad magic bytes); {fix}")
    r = Reader(data)
    r.pos = len(MAGIC)
    try:
        start = r.pos
        version = r.u8()
        if version > CONTAINER_VERSION:
            raise ArtifactError(f"{where}: compact format version {version} is newer than this torchslim reads "
                                f"({CONTAINER_VERSION}); upgrade torchslim")
        blob = r.take(r.varint(limit=r.remaining()))
        head = bytes(data[start:r.pos - len(blob)])
        if r.take(4) != _crc(head, blob):
            raise CorruptStream("header checksum mismatch")
        meta = json.loads(zlib.decompress(blob))
        names = meta["sections"]
        if not isinstance(meta, dict) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CorruptStream("metadata has no section list")
    except ArtifactError:
        raise
    except Exception as e:  # CorruptStream, zlib/json errors, missing keys
        raise ArtifactError(f"{where}: header: {e}; {fix}") from None
    sections = []
    for i, name in enumerate(names):
        try:
            start = r.pos
            n = r.varint(limit=r.remaining())
            ln = bytes(data[start:r.pos])
            payload = r.take(n)
            if r.take(4) != _crc(ln, payload):
                raise CorruptStream("checksum mismatch")
        except CorruptStream as e:
            raise ArtifactError(f"{where}: section {i} ({name!r}): {e}; {fix}") from None
        sections.append((name, payload))
    if r.remaining():
        raise ArtifactError(f"{where}: {r.remaining()} unexpected bytes after the last section; {fix}")
    return meta, sections
