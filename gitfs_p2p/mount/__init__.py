"""The read-only FUSE mount: layout, pack store, the pyfuse3 filesystem, snapshots, torrents in the mount."""
