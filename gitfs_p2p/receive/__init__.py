"""The receiving side: scanning a download directory, quarantine, importing, refs, the watcher."""
