"""Development-only token minting (seed 001 ``POST /api/v1/test/generate-token``); absent in production."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from email_service.security.tokens import create_jwt_token

from . import examples
from .context import service_context
from .gate import guard
from .schemas import TokenIn, TokenOut

bp = guard(
    APIBlueprint(
        "dev",
        __name__,
        tag={"name": "Development", "description": "Helpers that exist outside production only (seed 001)"},
    ),
    authenticated=False,
)


@bp.post("/test/generate-token")
@bp.input(TokenIn, location="json", example=examples.TOKEN_REQUEST)
@bp.output(TokenOut, example=examples.TOKEN)
@bp.doc(
    summary="Mint a JWT for a tenant and user (not available in production)",
    description="Signs an HS256 token with the service's secret for testing a frontend without an identity provider. "
    "Takes `tenantId`, `userId`, `role` (`user` or `admin`) and `expiresInHours`; seed 001's `tenant_id`, `user_id` "
    "and `expires_in_hours` are accepted too. The route does not exist in production.",
    operation_id="generateToken",
    responses=[400, 415, 429],
)
def generate_token(json_data: dict[str, Any]) -> dict[str, Any]:
    ctx = service_context()
    hours = json_data.get("expiresInHours") or ctx.tokens.expiration_hours
    token = create_jwt_token(
        ctx.tokens,
        tenant_id=json_data["tenantId"],
        user_id=json_data["userId"],
        role=json_data["role"],
        expires_in_hours=hours,
    )
    return {"token": token, "tokenType": "Bearer", "expiresIn": int(hours * 3600)}
