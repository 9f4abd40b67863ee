"""Merchants run their own marketing: versions of their setup, simulation on real history, activation, audit.

- ``versions``: the stored versions and which one is live (owner of ``marketing_versions``,
  ``marketing_active``).
- ``audit``: the trail of drafts, activations and applies (owner of ``marketing_audit``).
- ``changes``: what changed between two documents, in words (pure).
- ``service``: the use cases the merchant API and ``cmc apply`` share.
- ``simulation``: replay stored sales through two rule sets, writing nothing.
- ``idempotency``: ``Idempotency-Key`` on the merchant API's POSTs (owner of ``idempotency_keys``).
- ``wire``: the merchant API's request and response bodies.
- ``client``: ``cmc marketing ...``, a client of the merchant API.
"""
