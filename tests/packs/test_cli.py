"""`gitp2p packs` and `gitp2p pack` as a user runs them, including every bad input."""

from __future__ import annotations

import os
import subprocess


from testutil import git, gitp2p


def _one_clean_error_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitp2p: error: "), err
    return lines[0]


def test_packs_lists_every_commit_oldest_first(history):
    proc = gitp2p("packs", history)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.decode().splitlines()]
    order = {c: i for i, (c, _) in enumerate(rows)}
    assert set(order) == set(git("rev-list", "--all", cwd=history).split())
    for commit, size in rows:
        assert int(size) > 32
        for parent in git("rev-parse", f"{commit}^@", cwd=history).split():
            assert order[parent] < order[commit], "parents come before children"


def test_packs_for_given_revisions(history):
    proc = gitp2p("packs", history, "main~10")
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.decode().splitlines()]
    assert sorted(listed) == sorted(git("rev-list", "main~10", cwd=history).split())


def test_pack_to_file_and_stdout_agree_and_git_reads_them(history, tmp_path):
    commit = git("rev-parse", "main~3", cwd=history).strip()
    out = tmp_path / "x.pack"
    proc = gitp2p("pack", history, "main~3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split()[0] == commit
    stdout = gitp2p("pack", history, commit[:10], "-o", "-")
    assert stdout.returncode == 0 and stdout.stdout == out.read_bytes()
    verify = subprocess.run(["git", "index-pack", "--stdin", "--fix-thin"], cwd=history, input=out.read_bytes(), capture_output=True)
    assert verify.returncode == 0, verify.stderr


def test_pack_default_output_name(history, tmp_path):
    import sys

    commit = git("rev-parse", "main", cwd=history).strip()
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "pack", history, "main"], cwd=tmp_path, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / f"{commit}.pack").read_bytes()[:4] == b"PACK"


def _nothing_written(repo: str) -> bool:
    return not os.path.exists(os.path.join(repo, ".git", "gitp2p"))


def test_not_a_repository(tmp_path):
    line = _one_clean_error_line(gitp2p("packs", str(tmp_path)))
    assert "not a git repository" in line
    assert os.listdir(tmp_path) == []
    assert "not a directory" in _one_clean_error_line(gitp2p("packs", str(tmp_path / "missing")))


def test_unknown_and_non_commit_revisions(fresh_history, tmp_path):
    assert "unknown revision" in _one_clean_error_line(gitp2p("pack", fresh_history, "no-such-branch"))
    assert "unknown revision" in _one_clean_error_line(gitp2p("packs", fresh_history, "deadbeef" * 5))
    tree = git("rev-parse", "main^{tree}", cwd=fresh_history).strip()
    assert "not a commit" in _one_clean_error_line(gitp2p("pack", fresh_history, tree, "-o", str(tmp_path / "t.pack")))
    assert not (tmp_path / "t.pack").exists()
    assert _nothing_written(fresh_history)


def test_shallow_clone_is_refused(fresh_history, tmp_path):
    shallow = str(tmp_path / "shallow")
    git("clone", "-q", "--depth", "3", f"file://{fresh_history}", shallow)
    assert "shallow" in _one_clean_error_line(gitp2p("packs", shallow))
    assert "shallow" in _one_clean_error_line(gitp2p("pack", shallow, "HEAD", "-o", str(tmp_path / "s.pack")))
    assert not (tmp_path / "s.pack").exists()
    assert not os.path.exists(os.path.join(shallow, ".git", "gitp2p"))


def test_unreadable_cache(fresh_history):
    cache_dir = os.path.join(fresh_history, ".git", "gitp2p")
    os.makedirs(cache_dir)
    path = os.path.join(cache_dir, "cache.sqlite3")
    with open(path, "wb") as fh:
        fh.write(b"this is not a database" * 100)
    before = open(path, "rb").read()
    assert "cache is unreadable" in _one_clean_error_line(gitp2p("packs", fresh_history))
    assert open(path, "rb").read() == before


def test_unwritable_output(fresh_history, tmp_path):
    line = _one_clean_error_line(gitp2p("pack", fresh_history, "HEAD", "-o", str(tmp_path / "no" / "dir" / "x.pack")))
    assert "cannot write" in line


def test_help_explains_the_commands():
    proc = gitp2p("--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for word in ("packs", "pack", "deterministic"):
        assert word in text
    sub = " ".join(gitp2p("pack", "--help").stdout.decode().split())
    assert "git index-pack --stdin --fix-thin" in sub and "--cache-bytes" in sub
