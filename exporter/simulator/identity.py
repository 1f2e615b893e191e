"""Credentials the fake IAM knows: users with passwords, AK/SK pairs, issued and static tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True, repr=False)
class IssuedToken:
    """A token the simulator accepts; project_id None means a domain-scoped token."""

    token: str
    project_id: str | None
    project_name: str | None
    user_name: str
    user_id: str
    domain_name: str
    issued_at: float
    expires_at: float

    def __repr__(self) -> str:
        return f"IssuedToken(project_id={self.project_id!r}, expires_at={self.expires_at!r})"


class IamError(Exception):
    """An IAM request that fails; `status` and `message` form the IAM-style error body."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def _stable_id(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class Identity:
    """The credential store behind `POST /v3/auth/tokens` and the ModelArts auth checks."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], str] = {}
        self._access_keys: dict[str, str] = {}
        self._tokens: dict[str, IssuedToken] = {}

    @property
    def has_users(self) -> bool:
        """Whether any IAM user was registered."""
        return bool(self._users)

    def add_user(self, domain_name: str, user_name: str, password: str) -> None:
        """Register an IAM user of an account (domain)."""
        self._users[(domain_name, user_name)] = password

    def add_access_key(self, access_key: str, secret_key: str) -> None:
        """Register an AK/SK pair."""
        self._access_keys[access_key] = secret_key

    def secret_for(self, access_key: str) -> str | None:
        """The SK of an access key, None when unknown."""
        return self._access_keys.get(access_key)

    def add_static_token(self, token: str, project_id: str, expires_at: float) -> None:
        """Accept a pre-shared token for one project until `expires_at` (epoch seconds)."""
        self._tokens[token] = IssuedToken(
            token=token,
            project_id=project_id,
            project_name=None,
            user_name="static",
            user_id=_stable_id("static"),
            domain_name="static",
            issued_at=0.0,
            expires_at=expires_at,
        )

    def revoke(self) -> None:
        """Forget every token, issued or static."""
        self._tokens.clear()

    def lookup(self, token: str) -> IssuedToken | None:
        """The token's record, None when the simulator never issued it (or revoked it)."""
        return self._tokens.get(token)

    def issue(
        self,
        *,
        domain_name: str,
        user_name: str,
        password: str,
        project_id: str | None,
        project_name: str | None,
        now: float,
        ttl: float,
        open_door: bool,
    ) -> IssuedToken:
        """Check a password and mint a token; `open_door` accepts anyone when no user exists."""
        known = self._users.get((domain_name, user_name))
        accepted = (
            hmac.compare_digest(known.encode(), password.encode())
            if known is not None
            else open_door and not self._users
        )
        if not accepted:
            raise IamError(401, "Unauthorized", "The username or password is wrong.")
        # IAM tokens are multi-kilobyte opaque strings; clients must not assume a short header.
        token = "MIIT" + secrets.token_urlsafe(1536)
        issued = IssuedToken(
            token=token,
            project_id=project_id,
            project_name=project_name,
            user_name=user_name,
            user_id=_stable_id("user", domain_name, user_name),
            domain_name=domain_name,
            issued_at=now,
            expires_at=now + ttl,
        )
        self._tokens[token] = issued
        return issued

    @staticmethod
    def domain_id(domain_name: str) -> str:
        """A stable 32-hex id for an account name."""
        return _stable_id("domain", domain_name)
