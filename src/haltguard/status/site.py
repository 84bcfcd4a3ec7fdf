"""The whole public page as files: HTML in both languages, the Statuspage JSON API, feeds.

A :class:`Site` is rendered once per change from a snapshot and then served as it is: the
app serves it from memory (with ETag and a gzip copy), the exporter writes it to
directories, and the static server serves such a directory. All three hand out the same
bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from haltguard.status import feeds, render, statuspage
from haltguard.status.snapshot import Snapshot
from haltguard.status.texts import LANGUAGES

REVISION_FILE = "revision.txt"
GZIP_LEVEL = 9
GZIP_SIZE_MIN = 512
FILES_MAX = 10_000

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".atom": "application/atom+xml; charset=utf-8",
    ".rss": "application/rss+xml; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(path)[1], "application/octet-stream")


@dataclass(frozen=True)
class SiteFile:
    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None  # the body compressed once, for clients that accept gzip

    @classmethod
    def of(cls, path: str, body: bytes) -> SiteFile:
        digest = hashlib.sha256(body).hexdigest()[:32]
        packed = gzip.compress(body, GZIP_LEVEL, mtime=0) if len(body) >= GZIP_SIZE_MIN else None
        return cls(body, content_type(path), f'"{digest}"', packed)


@dataclass(frozen=True)
class Site:
    """Files by their path relative to the page's root (``index.html``, ``en/index.html``,
    ``api/v2/summary.json`` ...)."""

    files: Mapping[str, SiteFile] = field(default_factory=dict)
    version: str = ""

    def get(self, path: str) -> SiteFile | None:
        """The file for a request path below the root: ``""`` and ``en/`` are the indexes."""
        if path == "" or path.endswith("/"):
            path += "index.html"
        return self.files.get(path)


def render_files(snapshot: Snapshot) -> dict[str, bytes]:
    """Every file of the page for ``snapshot``."""
    files: dict[str, bytes] = {}
    for language in LANGUAGES:
        prefix = "" if language == "ja" else "en/"
        files[f"{prefix}index.html"] = render.index_page(snapshot, language).encode()
        for event in snapshot.incidents:
            files[f"{prefix}incidents/{event.id}.html"] = \
                render.incident_page(snapshot, event, language).encode()
        for name, document in statuspage.documents(snapshot, language).items():
            files[f"{prefix}api/v2/{name}"] = statuspage.encode(document)
        files[f"{prefix}history.atom"] = feeds.atom(snapshot, language)
        files[f"{prefix}history.rss"] = feeds.rss(snapshot, language)
    assert len(files) <= FILES_MAX, "the page has more files than a site may hold"
    return files


def build_site(snapshot: Snapshot) -> Site:
    files = render_files(snapshot)
    digests = (path.encode() + b"\0" + hashlib.sha256(body).digest()
               for path, body in sorted(files.items()))
    version = hashlib.sha256(b"".join(digests)).hexdigest()[:16]
    files[REVISION_FILE] = f"{version}\n".encode()
    return Site({path: SiteFile.of(path, body) for path, body in files.items()}, version)


# --- export to a directory --------------------------------------------------------------------


def _write_atomically(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(body)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_site(site: Site, directory: Path) -> int:
    """Write ``site`` under ``directory``; returns how many files changed.

    Each file is replaced atomically and ``revision.txt`` is written last, so a reader
    that sees a new revision sees every file of it. Files of incidents no longer shown are
    left in place: links to them keep working.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for path, item in sorted(site.files.items()):
        if path == REVISION_FILE:
            continue
        target = directory / path
        if target.exists() and target.read_bytes() == item.body:
            continue
        _write_atomically(target, item.body)
        written += 1
    _write_atomically(directory / REVISION_FILE, site.files[REVISION_FILE].body)
    return written


def load_directory(directory: Path) -> Site:
    """A site from an exported directory (what the static server serves)."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name.startswith(".tmp-"):
            continue
        relative = path.relative_to(directory).as_posix()
        files[relative] = SiteFile.of(relative, path.read_bytes())
        if len(files) > FILES_MAX:
            raise ValueError(f"{directory} holds more than {FILES_MAX} files; is it the export?")
    revision = files.get(REVISION_FILE)
    return Site(files, revision.body.decode().strip() if revision else "")
