"""Credentials are stored only as hashes: client secrets as salted scrypt, console passwords as argon2.

A fingerprint of a stored hash is what access tokens carry, so a token stops working when the
credential it was issued for changes (``cmc.auth``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

import argon2

N, R, P = 2**14, 8, 1
_passwords = argon2.PasswordHasher()
"""argon2id with argon2-cffi's defaults (RFC 9106's second recommended option)."""


def hash_secret(secret: str) -> str:
    """A self-describing hash: ``scrypt$n$r$p$salt$digest``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=N, r=R, p=P)
    return "$".join(["scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, stored: str) -> bool:
    """``secret`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=2**26
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, _unb64(digest))


def hash_password(password: str) -> str:
    """An argon2id hash of a console user's password (PHC string format, salt included)."""
    return _passwords.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """``password`` matches the argon2 hash ``stored``."""
    try:
        return _passwords.verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def is_password_hash(text: str) -> bool:
    """``text`` is an argon2 hash argon2-cffi can verify (what ``passwordHash`` in the registry must be)."""
    try:
        argon2.extract_parameters(text)
    except argon2.exceptions.InvalidHashError:
        return False
    return True


def fingerprint(stored_hash: str) -> str:
    """A short digest of a stored hash: changes whenever the credential does, reveals nothing of it."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:24]


@functools.cache
def dummy_secret_hash() -> str:
    """A secret hash nothing matches: an unknown client id costs the same time as a known one."""
    return hash_secret(secrets.token_urlsafe(32))


@functools.cache
def dummy_password_hash() -> str:
    """A password hash nothing matches: an unknown console user costs the same time as a known one."""
    return hash_password(secrets.token_urlsafe(32))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
