"""Tollgate's HTTP service: FastAPI over a `Meter`, with API keys, metrics and a settlement
worker.

>>> app = create_app(meter)                     # an ASGI app (tests, embedding)
>>> key = create_api_key(meter, "admin", now)   # shown once; only its SHA-256 is stored
>>> serve("sqlite:///tollgate.db", None, "127.0.0.1", 8080)  # what `tollgate serve` runs
"""

from ledger.api.app import create_app
from ledger.api.auth import Keyring, Principal, Role, create_api_key
from ledger.api.serve import create_key, open_meter, serve

__all__ = [
    "Keyring",
    "Principal",
    "Role",
    "create_api_key",
    "create_app",
    "create_key",
    "open_meter",
    "serve",
]
