"""camtrap cloud stub: the fleet PKI and the ingest that stores what traps upload."""
