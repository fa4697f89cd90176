"""Delivery channels (e-mail, SMS, webhooks) behind one interface; see ``connectors.base``.

The outbox and its worker, which use them, live in ``vault/``; this package imports
nothing of the vault or Flask.
"""
