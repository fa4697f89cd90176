"""Delivery channels behind one interface, the outbox and its worker (a later issue)."""
