"""How one file is stored in a backup: as it is, or in compressed and/or encrypted frames.

Stored file layout when compressed or encrypted (``none`` + no key stores the bytes as they
are, so a plain backup costs one copy)::

    magic:8 "HGBKF1\\n\\0" | compression:u8 | encrypted:u8 | nonce_prefix:8
    frames: length:u32 | last:u8 | body          body = AES-GCM(compress(chunk)) or compress(chunk)

Each frame holds at most ``chunk_bytes`` of the file, so a file of any size is handled in
bounded memory. With a key, each frame is sealed with AES-256-GCM under a nonce made of the
file's random 8-byte prefix and the frame's index, and authenticated together with the file's
path, its index and whether it is the last: a frame moved, dropped, swapped between files or
a file cut after a frame all fail. Without a key, the manifest's SHA-256 of every file
catches the same damage.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from haltguard.backup.errors import DamagedBackupError, WrongKeyError

MAGIC: Final = b"HGBKF1\n\0"
_HEADER: Final = struct.Struct("<8sBB8s")
_FRAME: Final = struct.Struct("<IB")
KEY_BYTES: Final = 32
COMPRESSION_IDS: Final = {"none": 0, "zstd": 1, "gzip": 2}
_COMPRESSION_NAMES: Final = {number: name for name, number in COMPRESSION_IDS.items()}
FRAME_BODY_BYTES_MAX: Final = 80 << 20
"""No valid frame is larger (chunk_bytes_max plus what compression and the tag add)."""
COPY_BYTES: Final = 1 << 20
_KEY_CHECK_TEXT: Final = b"haltguard backup key check v1"


def generate_key_file(path: Path) -> None:
    """Write a new random key (base64 text) to ``path``, owner-only; never overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")


def read_key_file(path: Path) -> bytes:
    """The 32-byte key in ``path`` (base64 text), or :class:`WrongKeyError` saying why not."""
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise WrongKeyError(
            f"the backup key file {path} cannot be read ({exc.strerror})",
            message_ja=f"バックアップ鍵ファイル {path} を読めません({exc.strerror})",
            next_step="give the key file the backup was made with (backup.key_file)",
            next_step_ja="バックアップ作成時の鍵ファイルを指定してください(backup.key_file)",
        ) from exc
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise WrongKeyError(
            f"the backup key file {path} does not hold a base64 32-byte key",
            message_ja=f"バックアップ鍵ファイル {path} は base64 の 32 バイト鍵ではありません",
            next_step="create one with `haltguard backup keygen PATH`",
            next_step_ja="`haltguard backup keygen PATH` で作成してください",
        )
    return key


def key_check(key: bytes) -> str:
    """A value the manifest keeps to tell a wrong key before any file is read."""
    return hmac.new(key, _KEY_CHECK_TEXT, hashlib.sha256).hexdigest()[:32]


class StoredFile:
    """What writing one file produced: plaintext and stored sizes and SHA-256s."""

    __slots__ = ("sha256", "size_bytes", "stored_bytes", "stored_sha256")

    def __init__(self, size_bytes: int, sha256: str, stored_bytes: int, stored_sha256: str):
        self.size_bytes = size_bytes
        self.sha256 = sha256
        self.stored_bytes = stored_bytes
        self.stored_sha256 = stored_sha256


def _compressor(compression: str) -> Callable[[bytes], bytes]:
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress
    if compression == "gzip":
        return lambda data: gzip.compress(data, compresslevel=6, mtime=0)
    return bytes


def _decompressor(compression: str) -> Callable[[bytes], bytes]:
    if compression == "zstd":
        decompressor = zstandard.ZstdDecompressor()
        return lambda data: decompressor.decompress(data, max_output_size=FRAME_BODY_BYTES_MAX)
    if compression == "gzip":
        return gzip.decompress
    return bytes


def _aad(name: str, index: int, last: bool) -> bytes:
    return f"{name}\0{index}\0{int(last)}".encode()


def write_stored(
    source: BinaryIO, length: int, sink: BinaryIO, *, name: str, compression: str,
    key: bytes | None, chunk_bytes: int, pace: Callable[[int], None] | None = None,
) -> StoredFile:
    """Copy exactly ``length`` bytes of ``source`` to ``sink`` in the stored form.

    ``length`` is what the manifest promises (a live journal segment is copied up to the
    recorded end, never past it); a source shorter than that is a :class:`DamagedBackupError`.
    ``pace`` is told the size of every chunk read, and may sleep to bound the rate.
    """
    plain_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    stored_bytes = 0

    def emit(data: bytes) -> None:
        nonlocal stored_bytes
        sink.write(data)
        stored_hash.update(data)
        stored_bytes += len(data)

    if compression == "none" and key is None:  # stored as it is: one digest serves both
        with ThreadPoolExecutor(1, thread_name_prefix="backup-hash") as hasher:
            hashed: Future[None] | None = None
            for chunk in _read_exactly(source, length, COPY_BYTES, name):
                if hashed is not None:
                    hashed.result()
                hashed = hasher.submit(plain_hash.update, chunk)  # overlaps the write
                sink.write(chunk)
                if pace is not None:
                    pace(len(chunk))
            if hashed is not None:
                hashed.result()
        digest = plain_hash.hexdigest()
        return StoredFile(length, digest, length, digest)
    compress = _compressor(compression)
    prefix = os.urandom(8)
    sealer = AESGCM(key) if key is not None else None
    emit(_HEADER.pack(MAGIC, COMPRESSION_IDS[compression], int(sealer is not None), prefix))
    index, remaining = 0, length
    chunks = _read_exactly(source, length, chunk_bytes, name)
    chunk = next(chunks, b"")
    while True:
        following = next(chunks, None)
        last = following is None
        plain_hash.update(chunk)
        if pace is not None:
            pace(len(chunk))
        body = compress(chunk)
        if sealer is not None:
            body = sealer.encrypt(prefix + struct.pack("<I", index), body,
                                  _aad(name, index, last))
        emit(_FRAME.pack(len(body), int(last)) + body)
        remaining -= len(chunk)
        if following is None:
            break
        chunk, index = following, index + 1
    assert remaining == 0
    return StoredFile(length, plain_hash.hexdigest(), stored_bytes, stored_hash.hexdigest())


def _read_exactly(source: BinaryIO, length: int, step: int, name: str) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = source.read(min(step, remaining))
        if not chunk:
            raise DamagedBackupError(
                f"{name}: the source ended {remaining} bytes before the recorded length",
                message_ja=f"{name}: 記録された長さより {remaining} バイト手前で終わっています",
                next_step="take the backup again; if it repeats, run `haltguard venue verify`",
            )
        remaining -= len(chunk)
        yield chunk


class Readable(Protocol):
    """What decoding reads from: a file, or a reader that digests as it goes."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_stored(
    source: Readable, sink: BinaryIO, *, name: str, compression: str, key: bytes | None,
    size_bytes: int, sha256: str,
) -> None:
    """Decode one stored file into ``sink``; check its size and SHA-256 against the manifest.

    Raises :class:`DamagedBackupError` naming the file for any damage (a frame cut short,
    one that fails authentication or decompression, a wrong length or digest).
    """
    digest = hashlib.sha256()
    written = 0
    if compression == "none" and key is None:
        while chunk := source.read(COPY_BYTES):
            digest.update(chunk)
            sink.write(chunk)
            written += len(chunk)
    else:
        for chunk in _frames(source, name, compression, key):
            digest.update(chunk)
            sink.write(chunk)
            written += len(chunk)
    if written != size_bytes:
        raise damaged_file(name, f"restores to {written} bytes, the manifest says {size_bytes}",
                       f"復元後 {written} バイトで、マニフェストは {size_bytes} バイト")
    if digest.hexdigest() != sha256:
        raise damaged_file(name, "its SHA-256 differs from the manifest's (the file is corrupted)",
                       "SHA-256 がマニフェストと一致しません(ファイル破損)")


def _frames(source: Readable, name: str, compression: str, key: bytes | None) -> Iterator[bytes]:
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size or header[:8] != MAGIC:
        raise damaged_file(name, "not a stored backup file (bad header)",
                       "バックアップの保存形式ではありません(ヘッダー不正)")
    _, compression_id, encrypted, prefix = _HEADER.unpack(header)
    if _COMPRESSION_NAMES.get(compression_id) != compression or bool(encrypted) != (
        key is not None
    ):
        raise damaged_file(name, "its header does not match the manifest's compression/encryption",
                       "ヘッダーがマニフェストの圧縮・暗号化設定と一致しません")
    decompress = _decompressor(compression)
    opener = AESGCM(key) if key is not None else None
    index = 0
    while True:
        head = source.read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise damaged_file(name, f"truncated: frame {index} is missing",
                           f"途中で切れています: フレーム {index} がありません")
        length, last = _FRAME.unpack(head)
        if length > FRAME_BODY_BYTES_MAX:
            raise damaged_file(name, f"frame {index} has an impossible length {length}",
                           f"フレーム {index} の長さ {length} が不正です")
        body = source.read(length)
        if len(body) < length:
            raise damaged_file(name, f"truncated inside frame {index}",
                           f"フレーム {index} の途中で切れています")
        if opener is not None:
            try:
                body = opener.decrypt(prefix + struct.pack("<I", index), body,
                                      _aad(name, index, bool(last)))
            except InvalidTag:
                raise damaged_file(
                    name, f"frame {index} fails authentication (corrupted or altered)",
                    f"フレーム {index} の認証に失敗しました(破損または改ざん)") from None
        try:
            yield decompress(body)
        except (zstandard.ZstdError, OSError, EOFError) as exc:
            raise damaged_file(name, f"frame {index} does not decompress ({exc})",
                           f"フレーム {index} を展開できません") from exc
        if last:
            if source.read(1):
                raise damaged_file(name, "bytes after its last frame",
                               "最後のフレームの後に余分なデータがあります")
            return
        index += 1


def damaged_file(name: str, problem_en: str, problem_ja: str) -> DamagedBackupError:
    return DamagedBackupError(
        f"{name}: {problem_en}",
        message_ja=f"{name}: {problem_ja}",
        next_step="restore from an older backup (`haltguard backup list`) and take a new one",
        next_step_ja="古いバックアップから復元し(`haltguard backup list`)、新しく取得してください",
    )
