"""Bearer tokens, checked the same way by every API that takes one (the online admin
endpoints, the events endpoint): ``Authorization: Bearer <token>``, compared in constant
time so that the answer's timing tells nothing about the token."""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when the header carries exactly ``token`` under the Bearer scheme."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
