"""The domain errors of gitfs-p2p: what a user can cause or fix, by layer.

Library layers raise these (never print, never exit); the command line catches
`GitfsError` at its one boundary (cli/__init__.py) and prints one line.  Anything
else that escapes is a bug and stays a traceback.
"""

__all__ = [
    "GitfsError",
    "UsageError",
    "RepositoryError",
    "GitCommandError",
    "FormatError",
    "CacheError",
    "PublishError",
    "MountError",
    "ReceiveError",
    "FetchError",
    "find_in_group",
]


class GitfsError(Exception):
    """A problem with the input or the environment (a path, a revision, a file, a disk), not a bug."""

    #: The command line's exit status for this error.
    exit_status = 1


class UsageError(GitfsError):
    """The command line itself is wrong (a port in use, an option that makes no sense)."""

    exit_status = 2


class RepositoryError(GitfsError):
    """Not a repository, a shallow one, a revision or object that is not there or cannot be read."""


class GitCommandError(GitfsError):
    """git is not installed, or a git command failed."""


class FormatError(GitfsError):
    """This machine cannot reproduce the pack format's bytes (its test vectors)."""


class CacheError(GitfsError):
    """The pack cache cannot be read or written (a full disk, a damaged file)."""


class PublishError(GitfsError):
    """Nothing to publish, or refs that cannot be published (no branch, a bad label)."""


class MountError(GitfsError):
    """A mount point or FUSE problem: not empty, already mounted, no /dev/fuse."""


class ReceiveError(GitfsError):
    """The receiving side cannot work: DIR is no directory, another watcher holds REPO."""


class FetchError(GitfsError):
    """`git-remote-gitp2p` cannot fetch: no peers, a bad address or torrent, a refused pack."""


def find_in_group(exc: BaseException, kinds) -> BaseException | None:
    """*exc* itself, or the first exception of type *kinds* (a type or a tuple) inside
    (nested) exception groups, as trio's nurseries raise them; None if there is none."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_in_group(inner, kinds)
            if found is not None:
                return found
    return None
