"""`git-remote-gitp2p`: git's remote helper for gitp2p:: addresses (docs/remote-helper.md)."""
