"""The consent model, the pure decision engine and the append-only ledger (issue 4)."""
