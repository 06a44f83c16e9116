"""The source catalog: ``source-catalog/{source}/file_list.txt``, ``metadata.json``, ``LICENSE.pdf``.

One partition per listed file, keyed ``<source>.<file stem>`` (sanitised); when
two distinct URLs of a source share a stem, each of them gets ``-<8 hex of the
URL's SHA-256>`` appended (longer where even that collides). A key depends only on
the set of URLs, never on line order, and a URL listed twice is one file. Lines
are validated when a file is processed, so a bad line fails its own partition
and names itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from gnt_assets.core.errors import InputError
from gnt_assets.core.keys import PartitionKeyError, sanitize_key

METADATA_FIELDS = ("name", "resolution-m", "website", "license", "producer")
# override: the configured crs replaces every file's (upstream's gdal_edit -a_srs); missing: only files without one get it.
CRS_MODES = ("override", "missing")


class CatalogError(InputError):
    """A source catalog entry (file list line, metadata) that cannot be used."""


@dataclass(frozen=True)
class SourceFile:
    source: str
    key: str
    url: str
    line: int
    volumes: tuple[str, ...] = ()  # a multi-volume 7z: every volume's URL in order (url is the first)

    @property
    def filename(self) -> str:
        """The downloaded file's name: the URL's last path segment, made safe (a volume set: ``{name}.7z``)."""
        name = sanitize_key(unquote(PurePosixPath(urlsplit(self.url).path).name) or self.key)
        return _VOLUME.sub("", name) if self.volumes else name


@dataclass(frozen=True)
class SourceMetadata:
    source: str
    fields: dict
    crs: str | None
    require_all_files: bool = False
    crs_mode: str = "override"

    def json_bytes(self) -> bytes:
        """metadata.json as it goes into the tarball (sorted keys, so re-runs are byte-identical)."""
        return (json.dumps(self.fields, indent=2, sort_keys=True) + "\n").encode()


_SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_VOLUME = re.compile(r"(?<=\.7z)\.(\d{3})$", re.IGNORECASE)
_VOLUME_HINT = re.compile(r"\.7z\.", re.IGNORECASE)  # a line without it has no volume suffix: no urlsplit needed


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


def _path_name(path: str) -> str:
    """``PurePosixPath(path).name`` without building the path (the sensor parses 100,000-line lists)."""
    return next((part for part in reversed(path.split("/")) if part and part != "."), "")


def _stem(url: str) -> str:
    name = _path_name(urlsplit(url.strip()).path) or url
    return name.split(".", 1)[0] if not name.startswith(".") else name


def _url_hash(url: str, length: int) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:length]


def file_keys(source: str, urls: list[str]) -> dict[str, str]:
    """URL -> key for every distinct URL: ``<source>.<stem>``, plus a hash of the URL where stems collide.

    Depends only on the set of URLs (shuffling the list changes no key) and never gives two URLs
    one key: colliding keys get an 8-hex hash, then 16, then the full 64 (distinct URLs, distinct hashes).
    """
    distinct = sorted(set(urls))
    base = {}
    for url in distinct:
        try:
            base[url] = f"{source}.{sanitize_key(_stem(url))}"[:180]
        except PartitionKeyError:  # a stem of only unsafe characters: the hash alone names it
            base[url] = f"{source}.file"
    keys = dict(base)
    for length in (8, 16, 64):
        counts = Counter(keys.values())
        clashing = [url for url in distinct if counts[keys[url]] > 1]
        if not clashing:
            break
        for url in clashing:
            keys[url] = f"{base[url]}-{_url_hash(url, length)}"
    return keys


def _group_volumes(source: str, entries: list[tuple[int, str]]) -> list[tuple[int, str, tuple[str, ...]]]:
    """Lines ``x.7z.001``, ``x.7z.002`` ... (upstream's multi-volume archives) become one file, at the
    first volume's line; a set must be numbered 001 to N without a gap."""
    sets: dict[str, list[tuple[int, int, str]]] = {}
    matches = {line: _VOLUME.search(urlsplit(line).path) for _, line in entries if _VOLUME_HINT.search(line.replace("\t", ""))}
    for number, line in entries:
        if match := matches.get(line):
            sets.setdefault(line[: -len(match.group(0))], []).append((int(match.group(1)), number, line))
    grouped, placed = [], set()
    for number, line in entries:
        match = matches.get(line)
        if match is None:
            grouped.append((number, line, ()))
            continue
        base = line[: -len(match.group(0))]
        if base in placed:
            continue
        placed.add(base)
        volumes = sorted(sets[base])
        if [v for v, _, _ in volumes] != list(range(1, len(volumes) + 1)):
            raise CatalogError(f"{source}/file_list.txt: the volumes of {base} are numbered {[f'{v:03d}' for v, _, _ in volumes]}; "
                               f"list every volume from .001 without a gap")
        grouped.append((min(n for _, n, _ in volumes), volumes[0][2], tuple(u for _, _, u in volumes)))
    return grouped


def parse_file_list(source: str, text: str) -> list[SourceFile]:
    """Every distinct non-comment line of a file list, in order (a repeated URL keeps its first line);
    the volumes of a multi-volume 7z are one file."""
    entries, seen = [], set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#") and line not in seen:
            seen.add(line)
            entries.append((number, line))
    grouped = _group_volumes(source, entries)
    keys = file_keys(source, [line for _, line, _ in grouped])
    return [SourceFile(source=source, key=keys[line], url=line, line=number, volumes=volumes) for number, line, volumes in grouped]


def list_files(catalog: Path, source: str) -> list[SourceFile]:
    """Every file of a source's file list, in order, with its partition key."""
    return parse_file_list(source, (catalog / source / "file_list.txt").read_text())


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
    require_all = fields.get("require_all_files", False)
    if not isinstance(require_all, bool):
        raise CatalogError(f"source {source}: metadata.json require_all_files must be true or false, got {require_all!r}")
    crs_mode = fields.get("crs_mode", "override")
    if crs_mode not in CRS_MODES:
        raise CatalogError(f"source {source}: metadata.json crs_mode must be one of {', '.join(CRS_MODES)}, got {crs_mode!r}")
    return SourceMetadata(source=source, fields=fields, crs=fields.get("crs"), require_all_files=require_all, crs_mode=crs_mode)


def license_pdf(catalog: Path, source: str) -> Path:
    path = catalog / source / "LICENSE.pdf"
    if not path.is_file() or not path.read_bytes()[:5] == b"%PDF-":
        raise CatalogError(f"source {source}: LICENSE.pdf is missing or not a PDF")
    return path
