"""Passwords, tokens, sessions and CSRF tokens.

- Passwords: argon2id (argon2-cffi defaults), never stored in the clear.
- API tokens (`label users add --token`): 256-bit random; the store keeps their SHA-256
  (a fast hash is enough for a high-entropy secret) so a leaked database leaks no token.
- Browser sessions: a random cookie token; the store keeps HMAC(secret, token). The secret
  is generated per install and kept in the database (`settings`), never a constant in the
  code (Label Studio's GHSA-f475-x83m-rx5m was a hard-coded Django SECRET_KEY).
- CSRF: a per-session synchronizer token in every form (or the X-CSRF-Token header), plus
  an Origin check; the login form, before a session exists, uses a signed double-submit token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from ipaddress import ip_address

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_dummy: list[str] = []
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Checks against a throwaway hash when the user does not exist (or has no password),
    so a login takes as long either way."""
    if not _dummy:
        _dummy.append(_hasher.hash(secrets.token_urlsafe(16)))
    try:
        return _hasher.verify(password_hash or _dummy[0], password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time string equality; None never matches."""
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def login_csrf(secret: str, nonce: str) -> str:
    """The login form's token: bound to a random cookie nonce by the install's secret."""
    return keyed_hash(secret, "login:" + nonce)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
