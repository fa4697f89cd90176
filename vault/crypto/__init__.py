"""Envelope encryption, key providers and keyed indexes, built on ``cryptography``."""
