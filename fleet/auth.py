"""The admin token: admin and training routes need ``Authorization: Bearer $FLEET_ADMIN_TOKEN``.

Without the variable those routes are disabled (403); prediction routes never need it. The token is
compared in constant time and every refusal is logged.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping

from fleet.http import Problem

TOKEN_VARIABLE = "FLEET_ADMIN_TOKEN"
logger = logging.getLogger(__name__)


def require_admin(headers: Mapping[str, str], route: str) -> None:
    """Return if the request carries the admin token; else raise the 403 or 401 it deserves."""
    expected = os.environ.get(TOKEN_VARIABLE, "")
    if not expected:
        logger.warning("refused %s: %s is not set, admin routes are disabled", route, TOKEN_VARIABLE)
        raise Problem(403, {"detail": f"admin routes are disabled: set {TOKEN_VARIABLE} on the server"})
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        logger.warning("refused %s: missing or wrong bearer token", route)
        raise Problem(401, {"detail": "a valid 'Authorization: Bearer <token>' header is required"},
                      {"WWW-Authenticate": 'Bearer realm="bento-fleet"'})
