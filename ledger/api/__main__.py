"""`python -m ledger.api --db URL [--redis URL] [--host H] [--port P]`: `tollgate serve` without
the CLI."""

from ledger.api.serve import main

main()
