"""Unsubscribe: the per-message link in every business message, and what following it does."""
