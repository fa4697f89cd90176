"""Per-customer data keys: creation, unwrapping, master-key rotation and crypto-shredding."""
