"""The customer's consent pages (/consents): thin views over the ``consent`` package."""
