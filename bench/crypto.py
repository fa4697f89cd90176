"""The baseline (bare AES-GCM from ``cryptography``) and the production password hash."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.timing import Rate, run_for
from vault.accounts.passwords import Passwords

# The production argon2id costs (vault/config.py defaults): t=3, 64 MiB, 4 lanes.
ARGON2_PRODUCTION = (3, 65536, 4)
NONCE_BYTES = 12


def aesgcm_rates(payloads: list[tuple[bytes, bytes]], seconds: float) -> tuple[Rate, Rate, Rate]:
    """Seal, open, and seal+open a whole profile's ``(plaintext, associated data)`` pairs
    with one 256-bit key, the way the vault does (random 96-bit nonce per seal).

    One operation is one profile's worth of fields. Returns (seal, open, seal+open).
    """
    aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal_all() -> list[tuple[bytes, bytes, bytes]]:
        sealed = []
        for plaintext, associated in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed.append((nonce, aead.encrypt(nonce, plaintext, associated), associated))
        return sealed

    sealed = seal_all()

    def open_all() -> None:
        for nonce, body, associated in sealed:
            aead.decrypt(nonce, body, associated)

    def round_trip() -> None:
        for nonce, body, associated in seal_all():
            aead.decrypt(nonce, body, associated)

    part = seconds / 2  # three short loops: the baseline is steady and cheap to measure
    return run_for(part, seal_all), run_for(part, open_all), run_for(part, round_trip)


def argon2_rate(seconds: float) -> Rate:
    passwords = Passwords(*ARGON2_PRODUCTION)
    return run_for(seconds, lambda: passwords.hash("correct horse battery staple"))
