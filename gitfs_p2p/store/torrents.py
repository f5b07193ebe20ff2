"""Repository torrents: commit packs plus a ref manifest as one reproducible v1 torrent.

Layout (docs/torrents.md): the info name is `packs`; the files are
`rollups/<boundary-id>.rollup` for the sealed history (pack/rollup.py), then
`<commit-id>.pack` for every other commit reachable from the published refs,
parents before children (the order of `gitp2p packs`), each roll-up or commit
followed by the packs of the annotated tags on its commits (`<tag-id>.pack`),
then the manifest `<label>.gitp2p-refs`, and last, when the repository signs its
manifests, the signature `<label>.gitp2p-sig` (trust/sigfile.py).  A newer tip on the same refs
therefore only appends packs (or, every ROLLUP_SPAN first-parent commits,
seals a run of them into one roll-up), and the manifest, which changes with
every update, sits at the end where it shifts nothing.  Anyone holding the same commits and refs
builds the same info dictionary, hence the same info-hash.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator

from torrentcore import bencode
from torrentcore.magnet import magnet_link
from torrentcore.metainfo import MetainfoError, build_info, build_torrent, info_hash, parse_torrent

from ..errors import PublishError
from ..pack.objects import RefTarget
from ..pack.manifest import MANIFEST_SUFFIX, ManifestError, RefManifest
from ..pack.order import pack_order, published_tags, torrent_order
from ..pack.rollup import (
    ROLLUP_SPAN,
    TAG_GROUP_SPAN,
    Rollup,
    chain_candidates,
    header_size,
    plan_history,
    rollup_header,
)
from ..trust.sigfile import SIGNATURE_SUFFIX

if TYPE_CHECKING:  # torrents are built from any PackSource; only the type is named here
    from .source import PackSource, Progress

__all__ = [
    "TORRENT_NAME",
    "RepoTorrent",
    "manifest_for",
    "select_refs",
    "build_repo_torrent",
    "cached_repo_torrent",
    "label_for",
    "rollup_chunks",
    "pack_order",
    "published_tags",
]

log = logging.getLogger(__name__)

TORRENT_NAME = "packs"
_LABEL_OK = re.compile(r"[A-Za-z0-9._+-]+\Z")


@dataclass(frozen=True)
class RepoTorrent:
    label: str
    manifest: RefManifest
    manifest_bytes: bytes
    files: tuple[tuple[str, int], ...]  # (path inside `packs/`, size), torrent order
    info: dict
    info_hash: bytes
    torrent: bytes  # the .torrent file's bytes
    tag_ids: tuple[str, ...] = ()  # the annotated tags among the packs (hex)
    # None: read back from the cache (not known here); derived from the rest, so not compared
    # (roll-ups and tag groups, torrent order)
    rollups: tuple[Rollup, ...] | None = field(default=None, compare=False)
    signature: bytes | None = None  # the <label>.gitp2p-sig file's bytes, when signed

    @property
    def signature_name(self) -> str | None:
        return None if self.signature is None else self.label + SIGNATURE_SUFFIX

    @property
    def manifest_name(self) -> str:
        return self.label + MANIFEST_SUFFIX

    def magnet(self, trackers: Iterable[str] = ()) -> str:
        return magnet_link(self.info_hash, name=TORRENT_NAME, trackers=tuple(trackers))


def label_for(ref_names: list[str]) -> str:
    """A file-name-safe label derived from ref names (short names joined by '+')."""
    short = []
    for name in ref_names:
        for prefix in ("refs/heads/", "refs/tags/", "refs/"):
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        short.append(re.sub(r"[^A-Za-z0-9._+-]", "-", name))
    label = "+".join(short)[:100].strip(".") or "refs"
    return label


def manifest_for(
    refs: dict[str, RefTarget], head_target: str | None, ref_args: list[str] = (), *, all_refs: bool = False
) -> tuple[RefManifest, str]:
    """The manifest and label for a torrent of REFs (default: HEAD's branch).

    refs maps the published refs (refs/heads/*, refs/tags/*) to what they name;
    head_target is the ref HEAD points at symbolically, if any.  Pure: the CLI
    and the mount both call it, so they publish the same info-hash.
    """
    if all_refs:
        published = dict(refs)
        if not published:
            raise PublishError("no branches or tags to publish")
        head = head_target if head_target in published else None
        label = "all"
    elif not ref_args:
        if head_target is None or head_target not in refs or refs[head_target].commit is None:
            raise PublishError("HEAD does not point at a branch with commits; name the refs to publish")
        published, head = {head_target: refs[head_target]}, head_target
        label = "HEAD"
    else:
        published = {}
        for arg in ref_args:
            full = next((c for c in (arg, f"refs/heads/{arg}", f"refs/tags/{arg}") if c in refs), None)
            if full is None:
                raise PublishError(f"{arg}: not a ref (a torrent publishes branches and tags, not bare commits)")
            published[full] = refs[full]
        head = head_target if head_target in published else None
        label = label_for(sorted(published))
    try:
        manifest = RefManifest({k: v.object.decode() for k, v in published.items()}, head)
        manifest.to_bytes()
    except ManifestError as exc:
        raise PublishError(str(exc)) from None
    return manifest, label


def select_refs(source: PackSource, ref_args: list[str], *, all_refs: bool = False) -> tuple[RefManifest, str]:
    """manifest_for() on the repository's current refs."""
    try:
        return manifest_for(source.repo.published_refs(), source.repo.head_target(), ref_args, all_refs=all_refs)
    except PublishError as exc:
        raise PublishError(f"{source.repo.path}: {exc}") from None


def build_repo_torrent(
    source: PackSource,
    manifest: RefManifest,
    label: str,
    *,
    trackers: Iterable[str] = (),
    web_seeds: Iterable[str] = (),
    progress: Progress | None = None,
    jobs: int = 1,
    signature: bytes | None = None,
) -> RepoTorrent:
    """Build the torrent of every commit reachable from the manifest's refs.

    Packs the cache lacks are built first, by `jobs` processes (PackSource.sizes).
    signature: the manifest's signature file (trust/signing.py), placed last; None
    gives exactly the bytes of an unsigned torrent."""
    if not _LABEL_OK.match(label) or label.startswith("."):
        raise PublishError(f"{label!r}: a torrent label may hold only letters, digits and . _ + -")
    manifest_bytes = manifest.to_bytes()
    targets = []
    for name, oid in sorted(manifest.refs.items()):
        target = source.repo.target(oid.encode())
        if target is None:
            raise PublishError(f"{source.repo.path}: {name} names {oid}, which is missing or unreadable")
        targets.append(target)
    key = _cache_key(source.format, label, manifest_bytes, trackers, web_seeds, signature)
    cached = _cached(source, key, label, manifest, manifest_bytes, signature)
    if cached is not None:
        return cached
    commits = source.commits_from(sorted({t.commit for t in targets if t.commit is not None}))
    commit_sizes = dict((c.id, size) for c, size in source.sizes(commits, progress=progress, jobs=jobs))
    plan = plan_history(commits, chain_candidates(dict(zip(sorted(manifest.refs), targets)), manifest.head))
    del commits
    entries = torrent_order(plan, published_tags(targets))

    def size_of(oid: bytes) -> int:
        if oid not in commit_sizes:  # a tag's pack
            commit_sizes[oid] = source.size(oid)
        return commit_sizes[oid]

    files = []
    for e in entries:
        if isinstance(e, Rollup):
            files.append((e.path, header_size(len(e.members)) + sum(size_of(c) for c in e.members)))
        else:
            files.append((f"{e.decode()}.pack", size_of(e)))
    files.append((label + MANIFEST_SUFFIX, len(manifest_bytes)))
    if signature is not None:
        files.append((label + SIGNATURE_SUFFIX, len(signature)))

    def stream() -> Iterator[bytes]:
        sizes = dict(files)
        for e in entries:
            if isinstance(e, Rollup):  # its file is written on the way, for whoever serves it (a mount)
                yield from source.rollup_files.writing(e, sizes[e.path], rollup_chunks(source, e, commit_sizes))
            else:
                yield source.pack(e)
        yield manifest_bytes
        if signature is not None:
            yield signature

    info = build_info([(name.split("/"), size) for name, size in files], stream(), TORRENT_NAME, multi_file=True)
    torrent = build_torrent(info, announce=list(trackers), web_seeds=list(web_seeds))
    tag_ids = tuple(sorted(oid.decode() for oid in published_tags(targets)))
    source.cache.put_torrent(key, torrent, " ".join(tag_ids))
    # whoever serves this torrent later (a mount finding it cached) reads the members
    # from here instead of walking the history again (store/rollups.py)
    grouped = tuple(e for e in entries if isinstance(e, Rollup))
    source.cache.put_rollups(ROLLUP_SPAN, list(plan.rollups))
    source.cache.put_rollups(TAG_GROUP_SPAN, [g for g in grouped if g.tags])
    return RepoTorrent(label, manifest, manifest_bytes, tuple(files), info, info_hash(info), torrent, tag_ids, grouped,
                       signature)


def cached_repo_torrent(
    source: PackSource, manifest: RefManifest, label: str, *, trackers: Iterable[str] = (), web_seeds: Iterable[str] = (),
    signature: bytes | None = None,
) -> RepoTorrent | None:
    """What build_repo_torrent returns when the pack cache holds it (rollups None), else
    None; reads nothing from the repository."""
    manifest_bytes = manifest.to_bytes()
    key = _cache_key(source.format, label, manifest_bytes, trackers, web_seeds, signature)
    return _cached(source, key, label, manifest, manifest_bytes, signature)


def rollup_chunks(source: PackSource, rollup: Rollup, sizes: dict[bytes, int] | None = None) -> Iterator[bytes]:
    """A roll-up's or tag group's bytes (pack/rollup.py), in pieces: its header, then each
    member's pack."""
    sizes = sizes or {}
    yield rollup_header([(c, sizes[c] if c in sizes else source.size(c)) for c in rollup.members], rollup.magic)
    for c in rollup.members:
        yield source.pack(c)


def _cache_key(fmt: int, label: str, manifest_bytes: bytes, trackers: Iterable[str], web_seeds: Iterable[str],
               signature: bytes | None = None) -> bytes:
    """What decides a repository torrent's bytes: the pack format and roll-up span, label,
    refs (the manifest names every ref's object, hence every commit and pack), trackers,
    web seeds and the signature file, if any."""
    fields = [fmt, b"rollups of every branch", ROLLUP_SPAN, b"tag groups", label.encode(), manifest_bytes, [t.encode() for t in trackers], [w.encode() for w in web_seeds]]
    if signature is not None:  # unsigned torrents keep the keys they always had
        fields.append(signature)
    return hashlib.sha256(bencode.encode(fields)).digest()


def _cached(source: PackSource, key: bytes, label: str, manifest: RefManifest, manifest_bytes: bytes,
            signature: bytes | None = None) -> RepoTorrent | None:
    """The torrent built before under key (cache.put_torrent), or None."""
    hit = source.cache.get_torrent(key)
    if hit is None:
        return None
    try:
        t = parse_torrent(hit[0])
    except MetainfoError as exc:  # a damaged row: build again (and replace it)
        log.warning("a cached %s torrent does not parse (%s); building it again", label, exc)
        return None
    files = tuple(("/".join(f.path), f.length) for f in t.files)
    return RepoTorrent(label, manifest, manifest_bytes, files, t.info, t.info_hash, hit[0], tuple(hit[1].split()),
                       signature=signature)
