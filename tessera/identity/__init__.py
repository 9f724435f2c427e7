"""Identity resolution: one engine for the pipeline and for `tessera identity resolve`."""

from tessera.identity.config import IdentityConfig, load_mapping
from tessera.identity.engine import ResolveResult, resolve
from tessera.identity.stable_ids import assign_stable_ids

__all__ = ["IdentityConfig", "ResolveResult", "assign_stable_ids", "load_mapping", "resolve"]
