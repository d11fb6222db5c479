"""Governance: the audit log of every admin action, and the two-person rule for the actions that
need a second admin's approval. Both live in the database (tables `audit_log` and
`pending_actions`), so every instance sharing it sees the same history and the same queue."""
