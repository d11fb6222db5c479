"""One entry of the ledger (spend/ledger.py): one upstream attempt of a request, as the journal,
the database, the rollups, the metrics and the traces all read it."""

from __future__ import annotations

import msgspec

from turnout.domain.pricing import Micros


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one upstream attempt of a request did and cost, under its own deployment and price.
    `cost_micros` is None when the model's price is unknown; `estimated` marks token counts turnout
    computed because the provider reported none; `attempts` is how many the request made in all;
    `reason` says why one that failed did (the error's code: `upstream_server_error`,
    `rate_limit_exceeded`..., `client_closed` with 499, `gateway_shutdown` with 503)."""

    request_id: str
    attempt: int = 1  # 1, 2...: the attempt's number in its request; 0: it reached no upstream
    at: float  # when the request arrived, unix seconds
    api: str  # chat | messages | responses | completions | embeddings | rerank | moderations | images
    # | transcriptions | speech
    key_id: str
    team_id: str | None = None
    user_id: str | None = None
    alias: str = ""
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 200
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cost_micros: Micros | None = 0
    cache_write_1h_tokens: int = 0  # of the cache writes, those kept an hour
    service_tier: str | None = None  # as the provider reported it, else as the request asked
    price_version: str | None = None  # the date of the price version it was charged at
    latency_ms: int = 0
    attempts: int = 0
    customer_price_micros: Micros | None = None  # what the caller's team pays (domain.billing)
    preset: str | None = None  # called through `preset/<name>`
    preset_team_id: str | None = None  # the preset's creator
    revenue_share_micros: Micros | None = None  # credited to the preset's creator
    reason: str | None = None  # why it failed (None: it answered)
    features: int = 0  # what the request needed (domain/request_features.py bits; 0: plain chat)
    # a mirror's shadow (routing/mirror.py): rehearsal spend, under REHEARSAL_KEY_ID, no team, no charge
    rehearsal: bool = False
    search_units: int = 0  # a reranker's searches, as its provider billed them (or turnout counted)
    images: int = 0  # images generated (images)
    audio_seconds: int = 0  # seconds of audio transcribed (transcriptions)
    characters: int = 0  # characters read aloud (speech)


# The key id (and, for replays, the alias) of rehearsal spend: a mirror's shadows
# (routing/mirror.py) and `turnout rehearse replay`'s requests. No issued key has it (keys are
# `key_` + hex), so no budget of a key, team or user counts it, and no customer is charged for it;
# it is counted on the candidate's provider and deployment only.
REHEARSAL_KEY_ID = "rehearsal"

entry_encoder = msgspec.json.Encoder()
entry_decoder = msgspec.json.Decoder(LedgerEntry)
