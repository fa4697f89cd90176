"""Businesses: vendor organisations, their members, OAuth clients and contact topics."""
