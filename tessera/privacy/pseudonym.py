"""Pseudonymous customer keys: what published outputs carry instead of tessera's customer_key.

customer_key is tessera's own id, but it is an unsalted hash of a CRM record id (tessera/identity/
stable_ids.py): anyone who can enumerate CRM ids can link it back. Outputs that leave the warehouse
carry customer_pkey = "pk_" + the first 32 hex digits of sha256(salt + ":" + customer_key), with
the salt from TESSERA_PSEUDONYM_SALT. Without the salt the key cannot be linked to a customer; with
it, a key is recomputed from a customer_key in SQL (DuckDB's sha256) or Python (hashlib), which
give the same digest.

The salt never appears in SQL text (which may be logged): it is set as a DuckDB variable on the
connection and read with getvariable(). Publishing and serving with the built-in demo salt are
refused unless TESSERA_MODE=demo. Rotating the salt re-keys every output: consumers that stored
keys must re-match them, and segment history restarts under the new keys.
"""

from __future__ import annotations

import hashlib

DEMO_SALT = "tessera-demo-salt-not-secret"
MIN_SALT_CHARS = 16
SALT_VARIABLE = "tessera_pseudonym_salt"
PREFIX = "pk_"
DIGITS = 32


class InsecureSaltError(RuntimeError):
    """The salt would let anyone link published keys back to customers."""


def check_salt(salt: str, mode: str) -> None:
    """Refuse the demo salt, or a short one, outside demo mode."""
    if mode == "demo":
        return
    if salt == DEMO_SALT:
        raise InsecureSaltError(
            "TESSERA_PSEUDONYM_SALT is not set (the built-in demo salt is public): set it to a secret of at least "
            f"{MIN_SALT_CHARS} characters, or TESSERA_MODE=demo for demo data"
        )
    if len(salt) < MIN_SALT_CHARS:
        raise InsecureSaltError(f"TESSERA_PSEUDONYM_SALT must have at least {MIN_SALT_CHARS} characters")


def salt_label(salt: str) -> str:
    """What a snapshot manifest records about the salt its keys were made with (never the salt):
    "demo" for the public built-in one, which production serving refuses, else "deployment"."""
    return "demo" if salt == DEMO_SALT else "deployment"


def pseudonym(salt: str, customer_key: str) -> str:
    return PREFIX + hashlib.sha256(f"{salt}:{customer_key}".encode()).hexdigest()[:DIGITS]


MACRO = "customer_pkey"


def install(con, salt: str) -> None:
    """Define the SQL macro customer_pkey(customer_key) on this connection. The salt is bound as a
    parameter into a session variable, so it never appears in SQL text."""
    con.execute(f"set variable {SALT_VARIABLE} = ?", [salt])
    con.execute(
        f"create or replace temp macro {MACRO}(k) as "
        f"('{PREFIX}' || substr(sha256(getvariable('{SALT_VARIABLE}') || ':' || k), 1, {DIGITS}))"
    )


def id_hash(salt: str, value: str) -> str:
    """The published lookup's hash of a shop's own id (a CRM customer id, a cookie, a declared id):
    sha256(salt + ":" + value) in hex, the same digest as the erasure's suppression list
    (privacy.erased_identifiers), so an erased id's hash is found in the lookup by equality."""
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()


def salt_check(salt: str) -> str:
    """What a snapshot manifest records so a reader holding a salt can tell it is the one the keys
    and id hashes were made with, without the manifest holding the salt: 16 hex digits of
    sha256(salt + ":tessera-salt-check")."""
    return hashlib.sha256(f"{salt}:tessera-salt-check".encode()).hexdigest()[:16]
