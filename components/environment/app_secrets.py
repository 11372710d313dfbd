"""The environment's secrets for its containers, and the one GitHub secret that carries them.

    secrets:        { JWT_SIGNING_KEY: generated, STRIPE_API_KEY: config }   (Pulumi.yaml)
    secretValues:   pulumi config set --secret --path 'secretValues.STRIPE_API_KEY' <value>
    components[].secrets / accessories[].secrets: which of them each one gets

A `generated` secret is a `random.RandomPassword`, made once per environment and kept in the
stack's state (replaced only if its resource is). A `config` secret is the stack's encrypted
config value. The values travel as one JSON object in the deploy secret `APP_SECRETS`, which
only the deploy job reads; the deploy sends it to the VM on stdin, where the program writes one
file per secret for the containers that get it (compose `secrets`, `<NAME>_FILE` naming the
path). The compose file, the plan and the stack outputs hold the names only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_random as random

from components.settings import GENERATED_SECRET_LENGTH


@dataclass(frozen=True)
class AppSecretsArgs:
    environment: str
    secrets: tuple[tuple[str, str], ...]
    """(name, `generated` or `config`), from the settings."""
    values: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """The `config` secrets' values (secret Outputs)."""


def resource_name(environment: str, name: str) -> str:
    return f"{environment}-secret-{name.lower().replace('_', '-')}"


class AppSecrets(pulumi.ComponentResource):
    value: pulumi.Output[str]
    """Secret: `{NAME: value}` as JSON, every secret of the environment."""

    def __init__(self, name: str, args: AppSecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:AppSecrets", name, None, opts)
        values: dict[str, pulumi.Output[str]] = {}
        for secret, kind in args.secrets:
            if kind == "generated":
                values[secret] = random.RandomPassword(
                    resource_name(args.environment, secret),
                    length=GENERATED_SECRET_LENGTH,
                    special=False,
                    opts=pulumi.ResourceOptions(parent=self),
                ).result
            else:
                values[secret] = args.values[secret]
        names = sorted(values)
        self.value = pulumi.Output.secret(
            pulumi.Output.all(*(values[n] for n in names)).apply(
                lambda resolved: json.dumps(dict(zip(names, resolved, strict=True)), sort_keys=True)
            )
        )
        self.register_outputs({})
