"""Data portability: everything the vault holds about a customer, as one JSON document."""
