"""The request log: for the keys and teams that have it on, what each request asked and what it
was answered, under the ledger's request id — captured on the request path as one append to a
bounded queue, redacted, cut to size and written to the database in batches by a background task,
browsed and exported through the admin API, and deleted after its retention period."""
