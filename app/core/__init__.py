"""The session lifecycle and policy rules, as plain functions over a SQLAlchemy session.

No Flask here: the web layer, the CLI, tests and workers call these directly. Every
function takes ``now`` (see app.clock), flushes but never commits (the caller commits
once), and records its audit event in the same transaction as its change.

A :class:`~app.core.errors.HoldfastError` means the core finished consistently: what it
wrote before raising (a failed attempt counted, an expired session marked ended) is meant
to be committed. Any other exception means roll back.
"""
