"""Passwords, their hashes, the session's login key, and per-seat SSH host keys.

Passwords are printed on paper, so the alphabet leaves out characters that look alike
(0/O, 1/l/I) and the length gives at least 60 bits of entropy.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from passlib import pwd
from passlib.hash import sha512_crypt

# No 0 O o 1 l I i: lower case only, so nobody wonders about the shift key.
PASSWORD_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
PASSWORD_ENTROPY_BITS = 64


def password_length(bits: int = PASSWORD_ENTROPY_BITS) -> int:
    return math.ceil(bits / math.log2(len(PASSWORD_ALPHABET)))


def new_password() -> str:
    return str(pwd.genword(length=password_length(), chars=PASSWORD_ALPHABET))


def password_hash(password: str) -> str:
    """SHA-512 crypt, the format ``chpasswd -e`` and /etc/shadow take."""
    return str(sha512_crypt.using(rounds=100_000).hash(password))


def password_matches(password: str, hashed: str) -> bool:
    return bool(sha512_crypt.verify(password, hashed))


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str
    public_openssh: str  # "ssh-ed25519 AAAA..."

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_openssh)


def new_ed25519(comment: str = "") -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private, f"{public} {comment}".strip())


def fingerprint(public_openssh: str) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -lf`` and ssh's first-login prompt print it."""
    blob = base64.b64decode(public_openssh.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def mask(secret: str) -> str:
    """What a log may show of a secret: its last four characters."""
    return "…" + secret[-4:] if len(secret) > 4 else "…"
