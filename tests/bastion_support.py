"""An environment's OCI side for the deploy tests: the OCI stand-in (tests/harness/oci_api.py)
wired to a bastion sshd (tests/harness/sshd.py, `BastionServer`) in front of a VM's sshd.

A session that becomes ACTIVE authorizes its key on the bastion's sshd for its target; deleting
it takes the key away, as OCI does. Two principals may open sessions on this environment's
bastion to the VM's address and SSH port, and nowhere else: the service user the identity
domain's trust maps the production deploy job to (workloadIdentity), and a CI user with an API
key (apiKey). A second bastion exists that neither may use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass

from ci import oci
from tests.harness.oci_api import TENANCY, ApiKey, BastionSpec, Issuer, OciApi, Principal, Trust
from tests.harness.sshd import BastionServer

INFRA = "DREAMSCAPE-AI/dreamscape-infra"
REGION = "eu-frankfurt-1"
BASTION = "ocid1.bastion.oc1.eu-frankfurt-1.aaaaaaaadeploybastion"
OTHER_BASTION = "ocid1.bastion.oc1.eu-frankfurt-1.aaaaaaaaotherbastion"
SERVICE_USER = "ocid1.user.oc1..aaaaaaaadeployserviceuser"
CI_USER = "ocid1.user.oc1..aaaaaaaaciapikeyuser"
CLIENT_ID = "0123456789abcdef0123456789abcdef"
CLIENT_SECRET = "idcs-client-secret-for-the-bastion-tests"


@dataclass
class Cloud:
    """The stand-in and what a client gets to reach it."""

    api: OciApi
    issuer: Issuer
    api_key: ApiKey
    bastion: BastionServer

    def access(self, auth: str = oci.WORKLOAD_IDENTITY, bastion_id: str = BASTION) -> str:
        """`DEPLOY_OCI_<ENV>` as the environment's stack writes it, pointing at the stand-in."""
        common = {"region": REGION, "bastionId": bastion_id, "auth": auth}
        if auth == oci.API_KEY:
            return json.dumps({**common, "tenancy": TENANCY, "user": CI_USER, "fingerprint": self.api_key.fingerprint})
        return json.dumps({**common, "domainUrl": self.api.url, "clientId": CLIENT_ID})

    def credential(self, auth: str = oci.WORKLOAD_IDENTITY) -> str:
        """`OCI_DEPLOY_CREDENTIAL` of that mode."""
        return self.api_key.private_pem if auth == oci.API_KEY else CLIENT_SECRET

    def endpoints(self) -> dict[str, str]:
        """What the deploy step's env sets only in tests: the Bastion API and the bastion's SSH endpoint."""
        return {"DEPLOY_BASTION_API": self.api.url, "DEPLOY_BASTION_SSH": f"127.0.0.1:{self.bastion.port}"}

    def sessions_left(self) -> list[str]:
        """Sessions nobody deleted (a deploy leaves none)."""
        return [s.id for s in self.api.sessions.values() if s.state not in GONE]


GONE = ("DELETING", "DELETED")
"""A deleted session: OCI answers the delete at once and finishes it in the background."""


@contextlib.contextmanager
def cloud(
    vm_port: int, bastion: BastionServer, spec: BastionSpec | None = None, repository: str = INFRA
) -> Iterator[Cloud]:
    """The stand-in for an environment whose VM's sshd listens on 127.0.0.1:`vm_port`; the
    trust admits the deploy job of `repository` in GitHub environment production."""
    spec = spec or BastionSpec(user_name=bastion.user, host_key=bastion.host_key)
    issuer = Issuer(repository, "production")
    api_key = ApiKey.generate()
    target = ("127.0.0.1", vm_port)
    principals = [
        Principal(SERVICE_USER, [BASTION], target),
        Principal(CI_USER, [BASTION], target, api_key=api_key),
    ]
    trust = Trust(CLIENT_ID, CLIENT_SECRET, audience="set below", subject=issuer.subject, user=SERVICE_USER)
    api = OciApi(
        region=REGION,
        bastions={BASTION: spec, OTHER_BASTION: BastionSpec(user_name=bastion.user, host_key=bastion.host_key)},
        principals=principals,
        trust=trust,
        issuer=issuer,
        on_active=lambda session: bastion.authorize(session.public_key, *session.target),
        on_deleted=lambda session: bastion.revoke(session.public_key),
    )
    with api:
        # The client asks for a token for the identity domain's URL: the stand-in's.
        api.trust = dataclasses.replace(trust, audience=api.url)
        yield Cloud(api, issuer, api_key, bastion)
