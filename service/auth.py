"""API keys: generation, hashing, lookup and revocation. Keys are never stored or logged."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import ApiKey, Tenant, utcnow
from service.errors import AuthenticationFailed

KEY_PREFIX = "ap_"
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Compared against when no key matches, so a miss costs the same as a hit.
_DUMMY_HASH = "0" * 64


def generate_key() -> str:
    """A new random API key: "ap_" and 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """sha256 hex digest of the key, the only form the database keeps."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_tenant_name(name: str) -> str:
    """Return `name` if it is a valid tenant name (it is used in storage keys)."""
    if not TENANT_NAME.match(name):
        raise ValueError(f"tenant name {name!r} must match {TENANT_NAME.pattern}")
    return name


def bearer_token(header: str | None) -> str:
    """The key in an `Authorization: Bearer <key>` header.

    Raises:
        AuthenticationFailed: the header is missing or not a bearer token.
    """
    if not header:
        raise AuthenticationFailed("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("Authorization must be 'Bearer <api key>'")
    return token.strip()


def authenticate(session: Session, header: str | None) -> Tenant:
    """The tenant an Authorization header's key belongs to.

    Raises:
        AuthenticationFailed: missing, unknown or revoked key (the message never holds the key).
    """
    digest = hash_key(bearer_token(header))
    row = session.execute(
        select(ApiKey, Tenant).join(Tenant).where(ApiKey.key_hash == digest)
    ).one_or_none()
    stored = row[0].key_hash if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, digest) or row is None:
        raise AuthenticationFailed("invalid API key")
    key, tenant = row
    if key.revoked_at is not None:
        raise AuthenticationFailed("API key revoked")
    return tenant


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    """The tenant called `name`, created if missing (flushed, not committed)."""
    check_tenant_name(name)
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()
    if tenant is None:
        tenant = Tenant(name=name, created_at=utcnow())
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant_name: str) -> str:
    """Create an API key for a tenant (creating the tenant if needed); the caller commits.

    Returns:
        The key itself: shown once, only its hash is stored.
    """
    tenant = get_or_create_tenant(session, tenant_name)
    key = generate_key()
    session.add(
        ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:8], created_at=utcnow())
    )
    session.flush()
    return key


def revoke_key(session: Session, key: str) -> bool:
    """Revoke a key; the caller commits.

    Returns:
        True if an active key was revoked, False if the key is unknown or already revoked.
    """
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True
