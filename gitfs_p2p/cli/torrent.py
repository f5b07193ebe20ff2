"""`gitp2p torrent` and `gitp2p tracker`: the command-line side of torrents."""

from __future__ import annotations

import argparse
import sys

from ..errors import GitfsError
from ..pack.rollup import ROLLUP_DIR, ROLLUP_SUFFIX, TAGS_SUFFIX
from .common import cache_option, human_size, jobs_option, open_source, progress_printer, write_output

__all__ = ["register"]


def cmd_torrent(args) -> int:
    from ..store.torrents import build_repo_torrent, select_refs
    from ..trust.signing import sign_manifest, signer_for

    source = open_source(args.repo, args.cache_bytes)
    try:
        manifest, label = select_refs(source, args.refs, all_refs=args.all)
        if args.label:
            label = args.label
        signer = signer_for(source.repo.git_dir)
        signature = None if signer is None else sign_manifest(signer, label, manifest.to_bytes())
        result = build_repo_torrent(
            source,
            manifest,
            label,
            trackers=args.tracker,
            web_seeds=args.web_seed,
            progress=progress_printer("building packs"),
            jobs=args.jobs,
            signature=signature,
        )
    finally:
        source.close()
        source.repo.close()
    out = sys.stdout
    if args.output == "-":
        if sys.stdout.isatty():
            raise GitfsError("refusing to write a binary .torrent to a terminal; use -o FILE or redirect stdout")
        sys.stdout.buffer.write(result.torrent)
        sys.stdout.buffer.flush()
        out = sys.stderr
    elif args.output:
        write_output(args.output, result.torrent)
        print(f"wrote {args.output}", file=out)
    total = sum(size for _, size in result.files)
    heads = sum(1 for r in result.manifest.refs if r.startswith("refs/heads/"))
    head = f", HEAD -> {result.manifest.head[len('refs/heads/'):]}" if result.manifest.head else ""
    print(f"info-hash {result.info_hash.hex()}", file=out)
    print(f"magnet {result.magnet(args.tracker)}", file=out)
    rollups = sum(1 for path, _ in result.files if path.startswith(ROLLUP_DIR + "/") and path.endswith(ROLLUP_SUFFIX))
    groups = sum(1 for path, _ in result.files if path.startswith(ROLLUP_DIR + "/") and path.endswith(TAGS_SUFFIX))
    tag_set = {f"{t}.pack" for t in result.tag_ids}
    tags = sum(1 for path, _ in result.files if path in tag_set)
    sealed = f"{_count(rollups, 'roll-up', 'roll-ups')}, " if rollups else ""
    grouped = f", {_count(groups, 'tag group', 'tag groups')} ({_count(len(tag_set) - tags, 'tag', 'tags')})" if groups else ""
    print(
        f"{sealed}{_count(len(result.files) - 1 - (result.signature is not None) - tags - rollups - groups, 'commit pack', 'commit packs')}, "
        f"{_count(tags, 'tag pack', 'tag packs')}{grouped} and {result.manifest_name}: "
        f"{human_size(total)}, {_count(len(result.files), 'file', 'files')}; {_count(heads, 'branch', 'branches')}, "
        f"{_count(len(result.manifest.refs) - heads, 'tag', 'tags')}{head}",
        file=out,
    )
    if result.signature is not None:
        from ..trust.sigfile import parse

        signed = parse(result.signature)
        print(f"signed {result.manifest_name} with {signed.key_type} key {signed.fingerprint}, "
              f"sequence number {signed.seq} ({result.signature_name})", file=out)
    if not args.output:
        print("(no file written: -o FILE writes the .torrent)", file=out)
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def register(sub) -> None:

    p = sub.add_parser(
        "torrent",
        parents=[cache_option(), jobs_option()],
        help="write the torrent of a repository's refs and print its magnet link",
        description="Write a v1 torrent holding the commit pack of every commit reachable from\n"
        "REFs (default: the branch HEAD points at), oldest first, plus a ref manifest\n"
        "(LABEL.gitp2p-refs) as the last file. Anyone holding the same commits and refs\n"
        "builds the same info-hash. A stock client seeds it straight from a mount:\n"
        "give it the .torrent and the mount point as its download directory.\n\n"
        "With `git config gitp2p.signManifests true` (and git's signing set-up:\n"
        "gpg.format ssh or openpgp, user.signingkey), the manifest is signed and the\n"
        "signature (LABEL.gitp2p-sig) travels as the very last file; receivers that set\n"
        "gitp2p.allowedSignersFile (SSH keys) or gitp2p.verifyOpenPGP (the keys of\n"
        "their gpg keyring) move refs only on a valid signature (docs/trust.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository")
    p.add_argument("refs", metavar="REF", nargs="*", help="branches or tags to publish (default: HEAD's branch)")
    p.add_argument("--all", action="store_true", help="publish every branch and tag (label `all`)")
    p.add_argument("--label", help="name of the manifest file (default: HEAD, all, or the refs' short names)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the .torrent to FILE (- for stdout); without -o only the summary is printed")
    p.add_argument("--tracker", metavar="URL", action="append", default=[], help="announce URL (repeatable)")
    p.add_argument("--web-seed", metavar="URL", action="append", default=[], help="BEP 19 web seed URL (repeatable)")
    p.set_defaults(func=cmd_torrent)
