"""Tollgate: an access-and-credits engine on a formally checked double-entry ledger."""

from ledger.core import *  # noqa: F403 - the package's API is the core's, re-exported
from ledger.core import __all__ as __all__

__version__ = "0.1.0"
