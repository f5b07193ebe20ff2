"""gitfs_p2p.pack.fsck against real `git fsck`: same objects, same message ids.

Every object below is written with `git hash-object --literally` into one repository;
`git fsck` (and `git fsck --strict`) judges them, and our checks must name the same
message ids for the same objects.  git prints infos as warnings and leaves ignored ids
out, so `extraHeaderEntry` (ignored by default) is compared separately.
"""

from __future__ import annotations

import re
import subprocess

import pytest


from testutil import git, raw_blob, raw_tree

from gitfs_p2p.pack import fsck, gitconfig, gitnames, objects as gitobjects
from gitfs_p2p.pack.fsck import FsckPolicy, Severity

GOOD = b"A U Thor <a@example.invalid> 1313584730 +0000"


def _obj(repo: str, kind: str, data: bytes) -> str:
    return git("-C", repo, "hash-object", "-w", "--literally", "-t", kind, "--stdin", input=data).strip()


def _commit(repo: str, tree: str, lines: list[bytes], body: bytes = b"\nmsg\n", parents=()) -> str:
    head = [b"tree " + tree.encode()] + [b"parent " + p.encode() for p in parents] + lines
    return _obj(repo, "commit", b"\n".join(head) + b"\n" + body)


COMMIT_HEADERS = {
    "ok": [b"author " + GOOD, b"committer " + GOOD],
    "badTimezone": [b"author A <a@x> 1313584730 +051800", b"committer " + GOOD],
    "missingEmail": [b"author No Mail 1313584730 +0000", b"committer " + GOOD],
    "badEmail": [b"author A <a@b<c> 1313584730 +0000", b"committer " + GOOD],
    "badName": [b"author A> <a@b> 1313584730 +0000", b"committer " + GOOD],
    "missingNameBeforeEmail": [b"author <a@b> 1313584730 +0000", b"committer " + GOOD],
    "missingSpaceBeforeEmail": [b"author A<a@b> 1313584730 +0000", b"committer " + GOOD],
    "missingSpaceBeforeDate": [b"author A <a@b>1313584730 +0000", b"committer " + GOOD],
    "zeroPaddedDate": [b"author A <a@b> 01313584730 +0000", b"committer " + GOOD],
    "badDate": [b"author A <a@b> soon +0000", b"committer " + GOOD],
    "badDateOverflow": [b"author A <a@b> 99999999999999999999 +0000", b"committer " + GOOD],
    "missingAuthor": [b"committer " + GOOD],
    "multipleAuthors": [b"author " + GOOD, b"author " + GOOD, b"committer " + GOOD],
    "missingCommitter": [b"author " + GOOD],
    "nulInHeader": [b"author A U\0Thor <a@b> 1313584730 +0000", b"committer " + GOOD],
    "committerBadTimezone": [b"author " + GOOD, b"committer C <c@x> 1313584730 +5"],
    "extraHeader": [b"author " + GOOD, b"committer " + GOOD, b"x-unknown yes", b"encoding ISO-8859-1"],
    # git reads the date with strtoumax, which skips white space, the newline too: a date on
    # the next line is read from there (nothing found), and that line is then the next header
    "committerDateOnNextLine": [b"author " + GOOD, b"committer C <c@x> ", b"1313584730 +0000"],
    "authorDateOnNextLine": [b"author A <a@x> ", b" 1313584730 +0000", b"committer " + GOOD],
}


def _trees(repo: str) -> dict[str, list[tuple[bytes, bytes, str]]]:
    blob = raw_blob(repo, b"x\n")
    sub = raw_tree(repo, [(b"100644", b"f", blob)])
    null = "0" * 40
    return {
        "clean": [(b"100644", b"a", blob), (b"40000", b"d", sub)],
        "hasDot": [(b"100644", b".", blob)],
        "hasDotdot": [(b"40000", b"..", sub)],
        "dotgit": [(b"40000", b".git", sub)],
        "dotGIT": [(b"40000", b".GIT", sub)],
        "dotgit-ntfs-dot": [(b"40000", b".git.", sub)],
        "dotgit-ntfs-space": [(b"100644", b".git . ", blob)],
        "dotgit-ntfs-short": [(b"40000", b"git~1", sub)],
        "dotgit-ntfs-ads": [(b"100644", b".git::$INDEX_ALLOCATION", blob)],
        "dotgit-hfs": [(b"40000", ".g\u200cit".encode(), sub)],
        "dotgit-hfs-bom": [(b"40000", "\ufeff.git".encode(), sub)],
        "dotgit-backslash": [(b"100644", b"a\\.git", blob)],
        "dotgit-bad-utf8-tail": [(b"40000", b".git\xff", sub)],
        "dotgit-noncharacter": [(b"40000", b".git\xef\xbf\xbe", sub)],
        "gitmodules-noncharacter-symlink": [(b"120000", b".gitmodules\xef\xbf\xbf", blob)],
        "not-dotgit": [(b"100644", b".gitx", blob), (b"100644", b"git~2", blob), (b"100644", b"xgit", blob)],
        "fullPathname": [(b"100644", b"a/b", blob)],
        "adjacent-dups": [(b"100644", b"a", blob), (b"100644", b"a", blob)],
        "file-and-dir-dups": [(b"100644", b"a", blob), (b"100644", b"a-b", blob), (b"40000", b"a", sub)],
        "treeNotSorted": [(b"100644", b"b", blob), (b"100644", b"a", blob)],
        "zeroPaddedFilemode": [(b"040000", b"d", sub)],
        "mode100664": [(b"100664", b"a", blob)],
        "mode100600": [(b"100600", b"a", blob)],
        "nullSha1": [(b"100644", b"a", null)],
        "gitmodules-symlink": [(b"120000", b".gitmodules", blob)],
        "gitmodules-symlink-case": [(b"120000", b".GITMODULES", blob)],
        "gitmodules-symlink-ntfs": [(b"120000", b"gitmod~1", blob)],
        "gitmodules-symlink-ntfs-hashed": [(b"120000", b"gi7eba~9", blob)],
        "gitignore-symlink": [(b"120000", b".gitignore", blob)],
        "gitattributes-symlink": [(b"120000", b".gitattributes", blob)],
        "mailmap-symlink": [(b"120000", b".mailmap", blob)],
        "gitlink-odd-mode": [(b"160000", b"sub", "1" * 40), (b"170000", b"weird", "2" * 40)],
    }


GITMODULES = {
    "ok": b'[submodule "lib"]\n\tpath = lib\n\turl = https://example.invalid/lib.git\n',
    "name-dotdot": b'[submodule "../../../../hooks"]\n\tpath = x\n\turl = https://example.invalid/x.git\n',
    "name-backslash": b'[submodule "a\\\\..\\\\b"]\n\turl = ./x\n',
    "url-option": b'[submodule "x"]\n\turl = --upload-pack=touch${IFS}pwned\n',
    "url-relative-escape": b'[submodule "x"]\n\turl = ../../:evil\n',
    "url-newline": b'[submodule "x"]\n\turl = ./%0ahost=evil\n',
    "url-no-host": b'[submodule "x"]\n\turl = http:///path\n',
    "url-empty-scheme": b'[submodule "x"]\n\turl = http::://example.com/x\n',
    "url-http-newline": b'[submodule "x"]\n\turl = https://a%0a@evil.invalid/x\n',
    "path-option": b'[submodule "x"]\n\tpath = -x\n\turl = ./x\n',
    "update-command": b'[submodule "x"]\n\tupdate = !rm -rf /\n',
    "quoted-value": b'[submodule "x"]\n\turl = "--upload-pack" ; comment\n',
    "continued": b'[submodule "x"]\n\turl = ../..\\\n/evil\n',
    "unparsable": b'[submodule "x"\n\turl = ./x\n',
    "bad-escape-after-bad-url": b'[submodule "y"]\n\turl = -y\n\tpath = "\\q"\n',
    "bom-and-crlf": b'\xef\xbb\xbf[submodule "x"]\r\n\turl = -crlf\r\n',
    "old-style-section": b"[submodule.x]\n\turl = -old\n",
}

TAGS = {
    "ok": b"object {c}\ntype commit\ntag v1\ntagger T <t@x> 1313590000 +0200\n\nmsg\n",
    "missingTaggerEntry": b"object {c}\ntype commit\ntag v1\n\nmsg\n",
    "badTagName": b"object {c}\ntype commit\ntag bad..name\ntagger T <t@x> 1313590000 +0200\n\nmsg\n",
    "taggerBadTimezone": b"object {c}\ntype commit\ntag v1\ntagger T <t@x> 1313590000 +02000\n\nmsg\n",
    "taggerDateOnNextLine": b"object {c}\ntype commit\ntag v1\ntagger T <t@x> \n1313590000 +0200\n\nmsg\n",
    "extraHeader": b"object {c}\ntype commit\ntag v1\ntagger T <t@x> 1 +0000\nnonsense\n\nmsg\n",
    "missingTagEntry": b"object {c}\ntype commit\ntagger T <t@x> 1313590000 +0200\n\nmsg\n",
    "badType": b"object {c}\ntype commot\ntag v1\ntagger T <t@x> 1313590000 +0200\n\nmsg\n",
}

#: Objects git cannot parse at all: fsck says "bad object" without a message id, and so
#: must our parsers (the receiver refuses them whatever the policy).
UNPARSABLE = {"commit:badParentSha1", "commit:missingTree", "tag:badType", "tag:missingTagEntry"}
#: Where we refuse more than git 2.39: git reads a blob's config with signed chars, so a
#: UTF-8 BOM makes `.gitmodules` unparsable to fsck (an info: accepted) while `git submodule`
#: later reads the checked-out file, BOM skipped, and would use its URL.
STRICTER = {"blob:bom-and-crlf": ({"gitmodulesParse"}, {"gitmodulesUrl"})}

_LINE = re.compile(r"^(error|warning) in (commit|tree|blob|tag) ([0-9a-f]{40}): (\w+):", re.M)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """(objects as {(kind, label): (id, bytes)}, git's findings {id: msg ids} for plain and strict fsck)."""
    repo = str(tmp_path_factory.mktemp("fsck") / "r")
    git("init", "-q", "--bare", repo)
    objects: dict[tuple[str, str], tuple[str, bytes]] = {}

    def put(kind: str, label: str, data: bytes) -> str:
        oid = _obj(repo, kind, data)
        objects[(kind, label)] = (oid, data)
        return oid

    empty_tree = raw_tree(repo, [])
    for label, lines in COMMIT_HEADERS.items():
        put("commit", label, b"\n".join([b"tree " + empty_tree.encode()] + lines) + b"\n\nmsg\n")
    put("commit", "nulInCommit", b"tree " + empty_tree.encode() + b"\nauthor " + GOOD + b"\ncommitter " + GOOD
        + b"\n\nbody \0 nul\n")
    put("commit", "unterminatedHeader", b"tree " + empty_tree.encode() + b"\nauthor " + GOOD)
    put("commit", "badParentSha1", b"tree " + empty_tree.encode() + b"\nparent nothex\nauthor " + GOOD
        + b"\ncommitter " + GOOD + b"\n\nm\n")
    put("commit", "missingTree", b"author " + GOOD + b"\ncommitter " + GOOD + b"\n\nm\n")
    for label, entries in _trees(repo).items():
        data = b"".join(m + b" " + n + b"\0" + bytes.fromhex(i) for m, n, i in entries)
        put("tree", label, data)
    for label, text in GITMODULES.items():
        blob = put("blob", label, text)
        put("tree", "gitmodules:" + label, b"100644 .gitmodules\0" + bytes.fromhex(blob))
    target = objects[("commit", "ok")][0]
    for label, text in TAGS.items():
        put("tag", label, text.replace(b"{c}", target.encode()))

    def run(*extra: str) -> dict[str, set[str]]:
        proc = subprocess.run(["git", "-C", repo, "fsck", "--no-dangling", *extra], capture_output=True, text=True)
        found: dict[str, set[str]] = {}
        for _, _, oid, msg_id in _LINE.findall(proc.stderr + proc.stdout):
            if msg_id == "brokenLinks" or msg_id == "broken":  # connectivity, not object checks
                continue
            found.setdefault(oid, set()).add(msg_id)
        return found

    proc = subprocess.run(["git", "-C", repo, "fsck", "--no-dangling"], capture_output=True, text=True)
    return objects, run(), run("--strict"), proc.stderr


def _ours(objects, strict: bool) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    gitmodules: set[bytes] = set()
    attributes: set[bytes] = set()
    for (kind, _), (oid, data) in objects.items():
        if kind == "commit":
            findings = fsck.fsck_commit(oid, data)
        elif kind == "tag":
            findings = fsck.fsck_tag(oid, data)
        elif kind == "tree":
            report = fsck.fsck_tree(oid, data, strict=strict)
            findings = report.findings
            gitmodules.update(report.gitmodules)
            attributes.update(report.gitattributes)
        else:
            continue
        for f in findings:
            found.setdefault(f.object_id, set()).add(f.msg_id)
    for (kind, _), (oid, data) in objects.items():
        if kind == "blob" and bytes.fromhex(oid) in gitmodules:
            for f in fsck.fsck_gitmodules(oid, data):
                found.setdefault(oid, set()).add(f.msg_id)
    policy = FsckPolicy(strict=strict)
    return {
        oid: {m for m in ids if policy.severity(m) != Severity.IGNORE}
        for oid, ids in found.items()
        if any(policy.severity(m) != Severity.IGNORE for m in ids)
    }


def _named(objects, found: dict[str, set[str]]) -> dict[str, set[str]]:
    names = {oid: f"{kind}:{label}" for (kind, label), (oid, _) in objects.items()}
    return {names.get(oid, oid): ids for oid, ids in found.items()}


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
def test_same_message_ids_as_git_fsck(judged, strict):
    objects, plain, strict_found, _ = judged
    theirs = _named(objects, strict_found if strict else plain)
    ours = _named(objects, _ours(objects, strict))
    for name, (git_says, we_say) in STRICTER.items():
        assert (theirs.pop(name), ours.pop(name)) == (git_says, we_say)
    for name in UNPARSABLE:
        assert name not in theirs and name in ours
        del ours[name]
    assert ours == theirs


def test_what_git_cannot_parse_our_parsers_refuse(judged):
    objects, _, _, stderr = judged
    for name in UNPARSABLE:
        kind, label = name.split(":")
        oid, data = objects[(kind, label)]
        assert oid in stderr  # git names it (as a bad or unparsable object)
        with pytest.raises(gitobjects.ObjectParseError):
            (gitobjects.parse_commit if kind == "commit" else gitobjects.parse_tag)(data)


def test_extra_header_entry_is_found_though_git_ignores_it(judged):
    objects, _, _, _ = judged
    oid, data = objects[("tag", "extraHeader")]
    assert "extraHeaderEntry" in {f.msg_id for f in fsck.fsck_tag(oid, data)}


def test_policy_defaults_accept_what_fetch_accepts():
    default = FsckPolicy()
    for msg_id in ("badTimezone", "missingEmail", "zeroPaddedFilemode", "badFilemode", "treeNotSorted",
                   "multipleAuthors", "nulInCommit", "missingTaggerEntry", "extraHeaderEntry", "badEmail",
                   "unterminatedHeader", "gitmodulesBlob"):
        assert not default.refuses(fsck.Finding(msg_id, "", "0" * 40, "commit")), msg_id
    for msg_id in ("hasDotgit", "gitmodulesUrl", "gitmodulesName", "gitmodulesSymlink", "duplicateEntries",
                   "nulInHeader", "hasDotdot"):
        assert default.refuses(fsck.Finding(msg_id, "", "0" * 40, "tree")), msg_id


def test_strict_policy_follows_git_config():
    f = fsck.Finding("zeroPaddedFilemode", "", "a" * 40, "tree")
    assert FsckPolicy(strict=True).refuses(f)  # a warning is an error when fetching strictly
    assert not FsckPolicy.from_config(True, [("zeroPaddedFileMode", "ignore")]).refuses(f)
    assert not FsckPolicy.from_config(True, [], skiplist=["A" * 40]).refuses(f)
    assert FsckPolicy.from_config(True, [("badFilemode", "error")]).refuses(fsck.Finding("badFilemode", "", "b" * 40, "tree"))
    # strict mode makes a *default* warning an error; a warning set in the configuration stays one
    assert not FsckPolicy.from_config(True, [("zeroPaddedFilemode", "warn")]).refuses(f)
    with pytest.raises(ValueError, match="unknown severity"):
        FsckPolicy.from_config(True, [("badTimezone", "Error")])  # git is case-sensitive there
    # fatal ids cannot be demoted, and the security set holds whatever the config says
    nul = fsck.Finding("nulInHeader", "", "c" * 40, "commit")
    assert FsckPolicy.from_config(True, [("nulInHeader", "ignore")], skiplist=["c" * 40]).refuses(nul)
    dotgit = fsck.Finding("hasDotgit", "", "d" * 40, "tree")
    assert FsckPolicy.from_config(True, [("hasDotgit", "ignore")], skiplist=["d" * 40]).refuses(dotgit)


@pytest.mark.parametrize(
    "name, expect",
    [(b".git", True), (b".GiT", True), (b"git~1", True), (b".git. . ", True), (b".git::$DATA", True),
     (".g\u200dit".encode(), True), (b".git\xff", True), (b".gitignore", False), (b"git~2", False), (b"", False)],
)
def test_dotgit_spellings(name, expect):
    assert (gitnames.is_hfs_dotgit(name) or gitnames.is_ntfs_dotgit(name)) is expect


def test_config_parser_matches_git_config(tmp_path):
    text = (b'\xef\xbb\xbf# comment\n[Submodule "Na\\"me"]\n\tURL = "a b" ; c\n\tpath=x\\\ny\n'
            b"\tbare\n[old.Style]\n\tkey = v # c\n")
    path = tmp_path / "cfg"
    path.write_bytes(text)
    theirs = git("config", "--file", str(path), "--list", "-z").split("\0")[:-1]
    ours = []
    for name, value in gitconfig.parse_git_config(text):
        ours.append(name.decode() + ("" if value is None else "\n" + value.decode()))
    assert ours == theirs


# -- the filter in front of the special-name rules ------------------------------------------

#: Pieces of the names the rules look for (.git, .gitmodules, ... as NTFS and HFS+ spell
#: them), and what may surround them; names drawn from these hit every branch of the rules.
_PIECES = [b".", b"git", b"GIT", b"gitmodules", b"GITMODULES", b"gitattributes", b"gitignore", b"mailmap",
           b"gitmod", b"gi7eba", b"gi7d29", b"gi250a", b"maba30", b"~", b"~1", b"~4", b"~9", b"~0", b"1",
           b" ", b":", b"::$DATA", b"\\", b"/", b"g", b"m", b"M", b"a", b"x",
           "\u200c".encode(), "\ufeff".encode(), "\u206a".encode(), "é".encode(), b"\xef\xbf\xbe", b"\xff", b"\x80"]
_HOSTILE_NAMES = [b".git", b".GIT", b".git.", b".git . ", b"git~1", b"GIT~1", b".git::$INDEX_ALLOCATION",
                  ".g\u200cit".encode(), "\ufeff.git".encode(), b"a\\.git", b".git\xff", b".git\xef\xbf\xbe",
                  b".gitmodules\xef\xbf\xbf", b".gitx", b"git~2", b"xgit", b".gitmodules", b".GITMODULES",
                  b"gitmod~1", b"gi7eba~9", b".gitignore", b".gitattributes", b".mailmap", b"mailma~1",
                  b"maba30~1", b"gitign~3", b"gi7d29~2", b"a\\gitmod~1", b"a\\.gitmodules .", b"gitmodules",
                  b"git", b"mailmap", b"Makefile", b"git-gui", b"gitweb", b"GIT-VERSION-GEN", b"."]


def _every_rule(name: bytes, mode: int) -> tuple:
    """What _special_name finds for a name, filtered (as fsck_tree runs it) and not."""
    from gitfs_p2p.pack.objects import RawTreeEntry

    entry = RawTreeEntry(b"%o" % mode, mode, name, b"\x01" * 20, "blob")
    out = []
    for look in (gitnames.maybe_special, lambda _: True):
        flags: dict = {}
        report = fsck.TreeReport([], [], [], [])
        saved = fsck.maybe_special
        fsck.maybe_special = look
        try:
            fsck._special_name("ab" * 20, entry, mode & 0xFFFF, flags, report.findings, report)
        finally:
            fsck.maybe_special = saved
        out.append((flags, [f.msg_id for f in report.findings], report.gitmodules, report.gitattributes))
    return tuple(out)


@pytest.mark.parametrize("mode", [0o100644, 0o120000, 0o40000])
def test_names_the_filter_passes_over_break_no_rule(mode):
    """maybe_special only skips names no rule would find anything in: the rules themselves
    are the reference, over the hostile names above and every short join of their pieces."""
    names = list(_HOSTILE_NAMES)
    names += [a + b for a in _PIECES for b in _PIECES]
    names += [a + b + c for a in (b".", b"g", b"G", b"\xef\xbb\xbf", "\u200c".encode()) for b in _PIECES for c in _PIECES]
    for name in names:
        filtered, every = _every_rule(name, mode)
        assert filtered == every, name
    for name in _HOSTILE_NAMES[:14]:  # and the filter does let the real spellings through
        assert gitnames.maybe_special(name), name


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.binary(min_size=1, max_size=3), min_size=1, max_size=6),
       st.sampled_from([0o100644, 0o120000]))
def test_filter_agrees_with_every_rule_on_drawn_names(pieces, mode):
    name = b"".join(pieces).replace(b"\0", b"")
    if name:
        filtered, every = _every_rule(name, mode)
        assert filtered == every, name
