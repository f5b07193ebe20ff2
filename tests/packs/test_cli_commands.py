"""`gitp2p COMMAND ...` registers only COMMAND's module; every message stays the whole parser's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

import gitfs_p2p.cli as cli


def test_the_table_names_each_command_of_the_module_that_registers_it():
    whole = cli.build_parser()
    sub = next(a for a in whole._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.COMMANDS), "same commands, same order as `gitp2p --help`"
    for command, module in cli.COMMANDS.items():
        assert command in cli.build_parser([module])._actions[-1].choices


def _run(argv, monkeypatch, whole):
    if whole:
        monkeypatch.setattr(cli, "_modules_for", lambda argv: None)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as exc:
            status = exc.code
    monkeypatch.undo()
    return status, out.getvalue(), err.getvalue()


# Every command's --help and usage errors, and the top level's odd spellings: none of them
# gets as far as running a command (a bare `tracker` would serve; every other command needs
# an argument).
ARGVS = [[c, "--help"] for c in cli.COMMANDS] + [[c] for c in cli.COMMANDS if c != "tracker"] + [
    [], ["--help"], ["-h", "watch"], ["-vh"], ["-v", "watch", "--help"], ["--verb", "tracker", "-h"],
    ["--version"], ["-v", "--version", "watch"], ["--ver"], ["--vers", "nosuch"], ["nosuch"],
    ["-", "watch"], ["--", "watch"], ["--verbose=1", "watch"], ["-x", "watch"], ["watch", "--bogus"],
    ["tracker", "--max-peers", "many"], ["watch", "--settle", "-1"], ["publish", "--name"],
    ["pack", "--output"], ["mount", "--cache-bytes", "12Q"], ["torrent", "-j", "zero"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_every_message_is_the_whole_parsers(argv, monkeypatch):
    assert _run(argv, monkeypatch, whole=False) == _run(argv, monkeypatch, whole=True)


def test_a_command_imports_only_its_own_modules():
    """`gitp2p watch` (the receiver, run often) does not load the tracker server (trio) or
    the pack cache (sqlite3, the pack builders); `gitp2p --version` loads no command."""
    probe = ("import json, sys\nfrom gitfs_p2p.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")

    def loaded(*argv):
        proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                              env=os.environ, timeout=120)
        return set(json.loads(proc.stderr.strip().splitlines()[-1]))

    watch = loaded("watch", "--help")
    assert "gitfs_p2p.cli.watch" in watch
    assert not {"trio", "torrentcore.tracker.server", "gitfs_p2p.store.cache", "gitfs_p2p.cli.tracker"} & watch
    assert not {m for m in loaded("--version") if m.startswith("gitfs_p2p.cli.")}
    everything = loaded("--help")
    assert {"torrentcore.tracker.server", "gitfs_p2p.cli.tracker", "gitfs_p2p.cli.seed"} <= everything
