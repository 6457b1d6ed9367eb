"""Store room: crash-safe JPEG files, the SQLite database, reconciliation, the writer.

The room alone speaks SQL to the device database. ``db`` owns the connections; the table
modules (``events``, ``media``, ``observations``, ``outbox``, ``kv``) own the queries and hand
back typed rows; ``vocabulary`` holds the states and kinds; ``verdicts`` records a
classification with its media policy; ``retention`` keeps the card from filling and prunes
old upload records.
"""
