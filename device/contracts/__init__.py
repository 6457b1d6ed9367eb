"""What the device agent and the cloud both speak, and nothing else.

``device/contracts`` holds the facts both ends must agree on: the wire protocol, the model-pack
format and its one ``Manifest`` model, manifest signatures, durable files and hashing, and the
one-line error plumbing the three programs share. It imports nothing else from ``device/``
(``make lint`` checks this with import-linter), so ``cloud_stub/`` can use it without pulling in
the agent's rooms.

This file imports nothing on purpose: the model build scripts (device/models/) run in a build
venv without pydantic and still use ``hashing``.
"""
