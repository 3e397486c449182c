"""The payment-provider sandbox: a separate program that plays the five e-wallet providers.

Run it with ``python -m wallets.sandbox --port 8765``. It is an independent witness of what was
really paid, so it keeps its own books and imports nothing from the Cezbek (Django) project:
only the standard library and ``requests`` (for Xenit callbacks). See ``docs/providers.md``.
"""
