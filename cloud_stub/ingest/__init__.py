"""Cloud ingest: reassemble, verify, deduplicate, store, then acknowledge."""
