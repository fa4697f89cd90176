"""The customer's view of their grants (/connections) and of every read (/activity)."""
