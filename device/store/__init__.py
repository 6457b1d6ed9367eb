"""Store room: crash-safe JPEG files, the SQLite database, reconciliation, the writer."""
