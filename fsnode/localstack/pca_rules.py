"""ACM Private CA's signing rule in moto, which ignores ``SigningAlgorithm``.

ACM Private CA signs with the CA's own key, so ``IssueCertificate`` refuses a signing
algorithm of another key type (``InvalidArgsException``: "Signing algorithm
SHA256WITHECDSA cannot be used with key type RSA_2048"), whatever the CSR's key. Installed
in the moto server process (and in tests' in-process moto servers).
"""

from __future__ import annotations

import json
from typing import Any

from fsnode.localstack.moto_patches import Patches

# The signing algorithms each CA key family takes.
_ALGORITHMS = {
    "RSA": ("SHA256WITHRSA", "SHA384WITHRSA", "SHA512WITHRSA"),
    "EC": ("SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA"),
}
_patches = Patches()


def install() -> None:
    """Patch moto's ACM PCA responses in this process (once)."""
    from moto.acmpca.responses import ACMPCAResponse

    if _patches.active:
        return
    issue = ACMPCAResponse.issue_certificate

    def checked_issue(self: Any) -> str:
        params = json.loads(self.body)
        ca = self.acmpca_backend.describe_certificate_authority(
            params.get("CertificateAuthorityArn")
        )
        key = str(ca.certificate_authority_configuration.get("KeyAlgorithm", ""))
        allowed = _ALGORITHMS.get(key.partition("_")[0], ())
        algorithm = params.get("SigningAlgorithm")
        if algorithm not in allowed:
            from moto.core.exceptions import JsonRESTError

            raise JsonRESTError(
                "InvalidArgsException",
                f"Signing algorithm {algorithm} cannot be used with key type {key}. Valid "
                f"signing algorithms are: {', '.join(allowed)}.",
            )
        return str(issue(self))

    _patches.set(ACMPCAResponse, "issue_certificate", checked_issue)
