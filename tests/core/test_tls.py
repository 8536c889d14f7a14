"""The shared TLS client context verifies like httpx's default and is built once."""

from __future__ import annotations

import ssl

from easyclaw.core.tls import client_tls_context


def test_one_verifying_context_per_process_and_trust_env_setting() -> None:
    context = client_tls_context()
    assert context is client_tls_context()
    assert context is not client_tls_context(trust_env=False)
    for each in (context, client_tls_context(trust_env=False)):
        assert each.verify_mode == ssl.CERT_REQUIRED
        assert each.check_hostname
        assert each.cert_store_stats()["x509_ca"] > 0
