"""The password policy for staff accounts, after the NCSC's guidance ("Password
administration for system owners"): length and a deny-list, no composition rules.

* At least ``MIN_LENGTH`` (12) characters, counted after Unicode NFC normalisation; at
  most ``MAX_LENGTH`` (the sign-in form's cap: Argon2 hashes any length, the cap bounds
  the work one attempt buys).
* Not one of the common and breached passwords shipped in
  ``storage/data/common-passwords.txt.gz`` (20,000 from Royce Williams' list, as Django
  ships it; licence beside it), compared case-insensitively, nor one of them with only
  digits or symbols added at the end ("sunshine2026!"): the guesses an attacker with a
  breach list tries first (credential stuffing, spraying: SECURITY_CHECKLIST AC-05).
* Not a short run repeated ("aaaaaaaaaaaa", "abcabcabcabc"), and not the account's own
  e-mail address or its local part: the first things guessed about a known account.
* No rules about upper case, digits or symbols, and no expiry: they push people to
  predictable patterns and written-down passwords (NCSC). Pasting and password managers
  are welcome (the forms set ``autocomplete="new-password"``).

One policy for every way a password is set: ``exhibit users add --password-stdin``,
``exhibit users passwd``, and a person changing their own on /account/password. Random
one-time passwords made by the system (120 bits) need no check.
"""

from __future__ import annotations

import functools
import gzip
import re
import unicodedata
from pathlib import Path

from storage.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 1024
DENY_LIST = Path(__file__).resolve().parent / "data" / "common-passwords.txt.gz"
_TRAILING = re.compile(r"[\d\W_]+$")
_REPEATED = re.compile(r"^(.{1,4})\1+$", re.S)


@functools.cache
def _common() -> frozenset[str]:
    with gzip.open(DENY_LIST, "rt", encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip())


def problem(password: str, *, email: str | None = None) -> Invalid | None:
    """Why ``password`` is refused (an ``Invalid`` with a stable code and a message for the
    person choosing it), or None when it is acceptable."""
    normal = unicodedata.normalize("NFC", password)
    if len(normal) < MIN_LENGTH:
        return Invalid(f"Passwords are at least {MIN_LENGTH} characters long: a few ordinary words together "
                       "make a good one", code="ERR_PASSWORD_SHORT")
    if len(normal) > MAX_LENGTH:
        return Invalid(f"Passwords are at most {MAX_LENGTH} characters long", code="ERR_PASSWORD_LONG")
    folded = normal.casefold()
    common = _common()
    if folded in common or folded.strip() in common or (_TRAILING.sub("", folded) or folded) in common \
            or _REPEATED.match(folded):
        return Invalid("That password is one of the most common ones, which attackers try first: choose "
                       "another", code="ERR_PASSWORD_COMMON")
    if email:
        address = email.strip().casefold()
        local = address.split("@", 1)[0]
        if address in folded or (len(local) >= 4 and local in folded):
            return Invalid("A password must not contain your e-mail address or user name: choose another",
                           code="ERR_PASSWORD_PERSONAL")
    return None


def check(password: str, *, email: str | None = None) -> None:
    """Raise the ``Invalid`` of ``problem`` when the password is refused."""
    found = problem(password, email=email)
    if found is not None:
        raise found
