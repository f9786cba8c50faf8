"""htpasswd files (Apache's format): ``user:hash`` lines, with the hashes Apache's ``htpasswd``
writes: bcrypt (``$2y$``, ``-B``), APR1-MD5 (``$apr1$``, the default) and SHA-1 (``{SHA}``, ``-s``).
Other formats (DES ``crypt``, plain text) are refused at load, naming the line.

bcrypt is checked by pyca's ``bcrypt`` package (its cost is the point: callers run it off the
event loop); APR1 is computed here with ``hashlib`` from its published algorithm (the FreeBSD
MD5-crypt with Apache's magic); comparisons of computed and stored hashes are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_APR1 = b"$apr1$"
BCRYPT, APR1, SHA1 = "bcrypt", "apr1", "sha1"


class HtpasswdEntry:
    __slots__ = ("user", "scheme", "hash")

    def __init__(self, user: str, scheme: str, hashed: bytes) -> None:
        self.user = user
        self.scheme = scheme
        self.hash = hashed

    @property
    def slow(self) -> bool:
        return self.scheme == BCRYPT

    def verify(self, password: bytes) -> bool:
        if self.scheme == BCRYPT:
            try:
                return bcrypt.checkpw(password, self.hash)
            except ValueError:
                return False
        if self.scheme == SHA1:
            computed = b"{SHA}" + base64.b64encode(hashlib.sha1(password).digest())
            return hmac.compare_digest(computed, self.hash)
        salt = self.hash[len(_APR1) :].split(b"$", 1)[0]
        return hmac.compare_digest(apr1(password, salt), self.hash)


def scheme_of(hashed: str) -> str | None:
    if hashed.startswith(("$2y$", "$2b$", "$2a$")):
        return BCRYPT
    if hashed.startswith("$apr1$") and hashed.count("$") == 3:
        return APR1
    if hashed.startswith("{SHA}"):
        return SHA1
    return None


def parse_htpasswd(text: str) -> tuple[dict[str, HtpasswdEntry], list[str]]:
    """Entries by user, and what is wrong with the lines that are not (``line N: ...``). Blank
    lines and ``#`` comments are skipped; a user listed twice keeps the first line, as Apache."""
    users: dict[str, HtpasswdEntry] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            problems.append(f"line {number}: not user:hash")
            continue
        scheme = scheme_of(hashed)
        if scheme is None:
            problems.append(
                f"line {number} ({user}): unsupported hash; use bcrypt (htpasswd -B), "
                "APR1-MD5 (htpasswd -m) or SHA-1 (htpasswd -s)"
            )
            continue
        users.setdefault(user, HtpasswdEntry(user, scheme, hashed.encode()))
    return users, problems


def apr1(password: bytes, salt: bytes) -> bytes:
    """Apache's APR1-MD5 crypt of ``password`` with ``salt`` (at most 8 bytes used)."""
    salt = salt[:8]
    alternate = hashlib.md5(password + salt + password).digest()
    digest = hashlib.md5(password + _APR1 + salt)
    remaining = len(password)
    while remaining > 0:
        digest.update(alternate[: min(16, remaining)])
        remaining -= 16
    bits = len(password)
    while bits:
        digest.update(b"\0" if bits & 1 else password[:1])
        bits >>= 1
    result = digest.digest()
    for i in range(1000):
        step = hashlib.md5(password if i & 1 else result)
        if i % 3:
            step.update(salt)
        if i % 7:
            step.update(password)
        step.update(result if i & 1 else password)
        result = step.digest()
    out = bytearray()
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        out += _to64((result[a] << 16) | (result[b] << 8) | result[c], 4)
    out += _to64(result[11], 2)
    return _APR1 + salt + b"$" + bytes(out)


def _to64(value: int, count: int) -> bytes:
    out = bytearray()
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)
