"""Accounts: sign-up, log-in, roles, passwords and the second factor."""
