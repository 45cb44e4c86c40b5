"""Secrets the control plane and edges share: the join token and the share keyring."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge


class Secrets(Construct):
    """The edge join token, the Ed25519 share-signing keyring and the bootstrap admin
    API key (docs/PROTOCOL.md)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.join_token = self._token(
            "JoinToken",
            "fsnode: token an edge node presents to POST /nodes/register",
            removal_policy,
        )
        # {"active": KID, KID: SEED}: the private key is sha256(SEED). Rotation adds
        # a new kid and moves "active", keeping old kids so live share URLs verify.
        self.signing_keyring = secretsmanager.Secret(
            self,
            "SigningKeyring",
            description="fsnode: share-URL signing keyring",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"active": "k1"}',
                generate_string_key="k1",
                password_length=64,
                exclude_punctuation=True,
            ),
            removal_policy=removal_policy,
        )
        # The first admin key, before any key exists in the keys table: read it with
        # `aws secretsmanager get-secret-value`, then create named keys with it.
        self.admin_key = self._token(
            "AdminApiKey",
            "fsnode: bootstrap admin API key (Authorization: Bearer KEY)",
            removal_policy,
        )
        for secret in (self.join_token, self.signing_keyring, self.admin_key):
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                (
                    "Rotation is an operator procedure, not a rotation Lambda: the "
                    "keyring must keep old kids while share URLs signed with them "
                    "live, a new join token must reach the edge task definition, and "
                    "the admin key is replaced by `put-secret-value` (README: Deploying)."
                ),
            )

    def _token(
        self, construct_id: str, description: str, removal_policy: RemovalPolicy
    ) -> secretsmanager.Secret:
        """A random 48-character token (letters and digits)."""
        return secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True
            ),
            removal_policy=removal_policy,
        )
