"""Governance: who stands behind each key and what authority they hold now (`people`), the audit
log of every admin action, and the two-person rule for the actions that need a second admin's
approval. All of it lives in the database (tables `api_keys`, `key_controllers`, `audit_log`,
`pending_actions`), so every instance sharing it sees the same people, history and queue."""
