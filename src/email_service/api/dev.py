"""Development-only token minting (seed 001 ``POST /api/v1/test/generate-token``); absent in production."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from email_service.security.tokens import create_jwt_token

from .common import require_json_body
from .context import service_context
from .schemas import TokenIn, TokenOut

bp = APIBlueprint("dev", __name__, tag="Development")
bp.before_request(require_json_body)


@bp.post("/test/generate-token")
@bp.input(TokenIn, location="json")
@bp.output(TokenOut)
@bp.doc(summary="Mint a JWT for a tenant and user (not available in production)", responses=[400, 415, 429])
def generate_token(json_data: dict[str, Any]) -> dict[str, Any]:
    ctx = service_context()
    hours = json_data.get("expires_in_hours") or ctx.tokens.expiration_hours
    token = create_jwt_token(
        ctx.tokens,
        tenant_id=json_data["tenant_id"],
        user_id=json_data["user_id"],
        role=json_data["role"],
        expires_in_hours=hours,
    )
    return {"token": token, "token_type": "Bearer", "expires_in": int(hours * 3600)}
