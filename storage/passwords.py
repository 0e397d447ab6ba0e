"""Password hashing (Argon2id via argon2-cffi): the only importer of argon2."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults are RFC 9106's second recommended profile (Argon2id, 64 MiB).
_hasher = PasswordHasher()

# A hash of a random password, verified against when the account does not exist, so that
# "no such user" and "wrong password" take the same time (user enumeration, AC-07).
_DUMMY = _hasher.hash("exhibit-dummy-password-for-timing")


def use_cheap_parameters_for_tests() -> None:
    """Argon2id with the smallest cost, for the test suite only (it hashes hundreds of
    passwords; the production cost is what makes it slow). Never called by the product:
    tests/conftest.py calls it, and existing hashes still verify (the parameters travel
    inside each hash)."""
    global _hasher, _DUMMY
    _hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    _DUMMY = _hasher.hash("exhibit-dummy-password-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
