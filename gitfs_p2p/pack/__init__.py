"""Pack formats and checks with no I/O: git objects, fsck, deltas, pack files, manifests, verification."""
