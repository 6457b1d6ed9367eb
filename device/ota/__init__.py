"""Over-the-air model updates, remote configuration and commands (docs/ota.md).

The cloud publishes a signed desired-model message; the device verifies the signature first,
then anti-rollback and expiry, downloads resumably, checks every file, stages, self-tests,
switches a ``current`` symlink atomically and rolls back if the new pack misbehaves.
"""
