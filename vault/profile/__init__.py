"""The customer's encrypted profile: OIDC standard claims plus declared interests."""
