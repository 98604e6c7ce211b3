"""Encryption at rest for agents' HMAC signing secrets (Fernet, keys from BRIKK_ENCRYPTION_KEYS)."""

import secrets
from functools import cache, lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

SIGNING_SECRET_PREFIX = "bss_"


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _cipher() -> MultiFernet:
    return _fernet(tuple(settings.BRIKK_ENCRYPTION_KEYS))


def new_signing_secret() -> str:
    return SIGNING_SECRET_PREFIX + secrets.token_urlsafe(32)


def encrypt(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _decrypt(tuple(settings.BRIKK_ENCRYPTION_KEYS), ciphertext)


# Every signed request needs its agent's secret: remembering recent decryptions saves a Fernet
# HMAC check and AES pass (~0.15 ms) per request. A ciphertext always decrypts to the same text, so
# nothing can go stale; rotation makes a new ciphertext, and a key change a new cache key.
@lru_cache(maxsize=1024)
def _decrypt(keys: tuple[str, ...], ciphertext: str) -> str:
    return _fernet(keys).decrypt(ciphertext.encode()).decode()
