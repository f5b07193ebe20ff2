"""The git side: the only users of dulwich (repository reads) and of git itself (the receiving repository)."""
