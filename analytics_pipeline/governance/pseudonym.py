"""Salted, keyed hashes that stand in for a tenant, actor or target once it is erased.

HMAC-SHA256 under ANALYTICS_PSEUDONYM_SALT: without the salt a pseudonym cannot be reversed by
hashing candidate ids; with the same salt the same tenant always gets the same pseudonym, so
several erasure records (or audit rows) of one tenant can be linked by an auditor. Pseudonyms
contain ':' and so can never be a tenant id or a partition key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.settings.registry import PSEUDONYM_SALT

SALT_ENV = PSEUDONYM_SALT.name
MIN_SALT_LENGTH = 16


@dataclass(frozen=True)
class Pseudonymizer:
    """Turns ids into pseudonyms under one secret salt."""

    salt: str

    @classmethod
    def from_env(cls) -> Pseudonymizer:
        salt = PSEUDONYM_SALT.read()
        if len(salt) < MIN_SALT_LENGTH:
            raise ConfigurationError(
                f"{SALT_ENV} must be set to a secret of at least {MIN_SALT_LENGTH} characters "
                "to erase a tenant (it keys the pseudonyms kept in the audit log and the erasure "
                "records). Generate one once (e.g. `openssl rand -hex 32`), store it with the "
                "deployment's secrets, and never change it"
            )
        return cls(salt)

    def _digest(self, *parts: str) -> str:
        message = "\x00".join(parts).encode()
        return hmac.new(self.salt.encode(), message, hashlib.sha256).hexdigest()[:24]

    def tenant(self, tenant_id: str) -> str:
        return f"erased:{self._digest('tenant', tenant_id)}"

    def scoped(self, kind: str, tenant_id: str, value: str) -> str:
        """A pseudonym for an id that is only unique within its tenant (actor, target)."""
        return f"{kind}:{self._digest(kind, tenant_id, value)}"
