"""The request lifecycle, in the order the product promises it:

    authenticate → authorise model → admit (limits) → reserve budget → route → respond → settle

Each step is one call to the service that owns it (steps.py); the web edge supplies an inbound (the
request) and a responder (how to answer), edge.py, so nothing here knows about HTTP frameworks.
Chat, embeddings and the pass-through are served in lifecycle.py, the one-shot tasks (rerank,
moderations, media) in tasks.py.
"""

from turnout.pipeline.edge import (
    Answerer,
    Inbound,
    MediaInbound,
    MediaResponder,
    PassthroughInbound,
    PassthroughResponder,
    RateLimitedInbound,
    Responder,
)
from turnout.pipeline.lifecycle import Pipeline, check_capabilities, check_output_limit
from turnout.pipeline.steps import PLACE_RECHECK, answer_of

__all__ = [
    "PLACE_RECHECK",
    "Answerer",
    "Inbound",
    "MediaInbound",
    "MediaResponder",
    "PassthroughInbound",
    "PassthroughResponder",
    "Pipeline",
    "RateLimitedInbound",
    "Responder",
    "answer_of",
    "check_capabilities",
    "check_output_limit",
]
