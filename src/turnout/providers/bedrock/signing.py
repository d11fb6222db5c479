"""AWS Signature Version 4 for Bedrock requests, computed by botocore (service name `bedrock`).

The signature covers the method, the path, the `host`, `content-type` and `x-amz-date` headers
(and `x-amz-security-token` with temporary credentials) and a hash of the body, so every request
gets its own headers: `SigV4Signer.headers` returns them as raw header lines for `HttpClient.send`.
botocore is imported here only, and this module only when a Bedrock provider is configured.
"""

from __future__ import annotations

import logging

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "bedrock"
CONTENT_TYPE = "application/json"  # the one signed header besides host and the x-amz-* ones
SIGNED_HEADERS = ("X-Amz-Date", "X-Amz-Security-Token", "Authorization")

# botocore logs each canonical request at DEBUG, session token included: never, even when
# turnout's own logging runs at DEBUG.
logging.getLogger("botocore.auth").setLevel(logging.INFO)


class SigV4Signer:
    def __init__(
        self, *, access_key_id: str, secret_access_key: str, session_token: str | None, region: str
    ) -> None:
        for value in (access_key_id, secret_access_key, session_token or "", region):
            if "\r" in value or "\n" in value:
                raise ValueError("AWS credentials and region must not contain line breaks")
        credentials = Credentials(access_key_id, secret_access_key, session_token)
        self._auth = SigV4Auth(credentials, SERVICE, region)

    def headers(self, url: str, body: bytes, *, method: str = "POST") -> bytes:
        """The `x-amz-date`, `x-amz-security-token` and `authorization` header lines for sending
        `body` to `url` (the URL exactly as sent: its path percent-encoded once; botocore encodes
        it once more for the canonical request, as SigV4 asks of every service but S3)."""
        request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": CONTENT_TYPE})
        self._auth.add_auth(request)
        lines = []
        for name in SIGNED_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                lines.append(f"{name.lower()}: {value}\r\n")
        return "".join(lines).encode("latin-1")
