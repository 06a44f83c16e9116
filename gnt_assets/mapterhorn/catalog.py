"""The source catalog: ``source-catalog/{source}/file_list.txt``, ``metadata.json``, ``LICENSE.pdf``.

One partition per listed file, keyed ``<source>.<file stem>`` (sanitised, made
unique when two URLs share a stem). Lines are validated when a file is
processed, so a bad line fails its own partition and names itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from gnt_assets.core.errors import InputError
from gnt_assets.core.keys import sanitize_key, unique_keys

METADATA_FIELDS = ("name", "resolution-m", "website", "license", "producer")


class CatalogError(InputError):
    """A source catalog entry (file list line, metadata) that cannot be used."""


@dataclass(frozen=True)
class SourceFile:
    source: str
    key: str
    url: str
    line: int

    @property
    def filename(self) -> str:
        """The downloaded file's name: the URL's last path segment, made safe."""
        return sanitize_key(unquote(PurePosixPath(urlsplit(self.url).path).name) or self.key)


@dataclass(frozen=True)
class SourceMetadata:
    source: str
    fields: dict
    crs: str | None

    def json_bytes(self) -> bytes:
        """metadata.json as it goes into the tarball (sorted keys, so re-runs are byte-identical)."""
        return (json.dumps(self.fields, indent=2, sort_keys=True) + "\n").encode()


_SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _source_folders(catalog: Path) -> list[str]:
    return sorted(p.name for p in catalog.iterdir() if (p / "file_list.txt").is_file()) if catalog.is_dir() else []


def sources(catalog: Path) -> list[str]:
    """Source folders with a file list and a usable name (it prefixes every file key, before the first dot)."""
    return [name for name in _source_folders(catalog) if _SOURCE_NAME.fullmatch(name)]


def unusable_sources(catalog: Path) -> list[str]:
    """Source folders skipped because their name is not ``[A-Za-z0-9_-]+``; the sensor reports them."""
    return [name for name in _source_folders(catalog) if not _SOURCE_NAME.fullmatch(name)]


def source_of(key: str) -> str:
    return key.split(".", 1)[0]


def _stem(url: str) -> str:
    name = PurePosixPath(urlsplit(url.strip()).path).name or url
    return name.split(".", 1)[0] if not name.startswith(".") else name


def list_files(catalog: Path, source: str) -> list[SourceFile]:
    """Every non-comment line of a source's file list, in order, with its partition key."""
    path = catalog / source / "file_list.txt"
    lines = [(number, line.strip()) for number, line in enumerate(path.read_text().splitlines(), 1)]
    entries = [(number, line) for number, line in lines if line and not line.startswith("#")]
    keys = unique_keys([f"{source}.{_stem(line)}" for _, line in entries])
    return [SourceFile(source=source, key=key, url=line, line=number) for key, (number, line) in zip(keys, entries, strict=False)]


def catalog_files(catalog: Path) -> dict[str, SourceFile]:
    return {entry.key: entry for source in sources(catalog) for entry in list_files(catalog, source)}


def check_url(entry: SourceFile) -> str:
    """The URL, or a CatalogError naming the source, line and problem."""
    where = f"{entry.source}/file_list.txt line {entry.line} ({entry.url!r})"
    parts = urlsplit(entry.url)
    if any(c.isspace() for c in entry.url):
        raise CatalogError(f"{where}: a URL may not contain spaces; percent-encode them (%20)")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CatalogError(f"{where}: only http(s) URLs can be downloaded, got scheme {parts.scheme or 'none'!r}")
    if parts.fragment or "#" in entry.url:
        raise CatalogError(f"{where}: a URL may not carry a fragment ('#{parts.fragment}')")
    return entry.url


def read_metadata(catalog: Path, source: str) -> SourceMetadata:
    path = catalog / source / "metadata.json"
    try:
        fields = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CatalogError(f"source {source}: {path.name} cannot be read ({error})") from error
    missing = [name for name in METADATA_FIELDS if name not in fields]
    if missing:
        raise CatalogError(f"source {source}: metadata.json lacks {', '.join(missing)}")
    return SourceMetadata(source=source, fields=fields, crs=fields.get("crs"))


def license_pdf(catalog: Path, source: str) -> Path:
    path = catalog / source / "LICENSE.pdf"
    if not path.is_file() or not path.read_bytes()[:5] == b"%PDF-":
        raise CatalogError(f"source {source}: LICENSE.pdf is missing or not a PDF")
    return path
