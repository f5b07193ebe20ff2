"""Packs of a repository: the persistent cache, the source that builds or serves them, repository torrents."""
