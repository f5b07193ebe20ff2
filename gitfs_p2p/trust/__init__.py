"""Signed ref manifests: the signature file's format, signing with git's set-up, verifying against allowed signers."""
