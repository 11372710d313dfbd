"""The central pipeline's rendered `deploy` job, for an environment on container instances: it
reads the environment's target from the variable its stack writes and deploys a new instance
behind the load balancer (ci/instances.py), against the OCI stand-in, with no SSH secret at
all. Only the OCI endpoint differs on a test machine: `DEPLOY_OCI_API` in the step's `env:`."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from ci import instances
from components.environment import compose
from components.workflows import central
from tests.central_support import (
    DISPATCH_TOKEN,
    RETRY_ENV,
    Artifacts,
    central_document,
    dispatch_github,
    rendered_file,
    settings_of,
    sha_of,
    stand_in,
)
from tests.harness.oci_api import ApiKey, OciApi, Principal
from tests.harness.oci_platform import BackendSetSpec, Platform, PlatformGrant
from tests.harness.workflow import Context, run_job
from tests.test_deploy_instances import COMPARTMENT, LB, NSG, SUBNET, TENANCY, environment

STACK = "production"
SETTINGS = settings_of(STACK)
DIGEST = "@sha256:" + "b" * 64
JOB_TOKEN = "ghs_the_deploy_jobs_own_token_4a1f"


def deploy_step(document: dict[str, Any]) -> dict[str, Any]:
    [step] = [s for s in document["jobs"]["deploy"]["steps"] if s.get("run") == "exec python3 -m ci.deploy"]
    return step


def test_the_rendered_job_deploys_a_container_instances_environment(plan_of) -> None:
    key = ApiKey.generate()
    grant = PlatformGrant(COMPARTMENT, subnet_ids=[SUBNET], nsg_ids=[NSG], load_balancer_ids=[LB])
    deployer = Principal("ocid1.user.oc1..deployer", api_key=key, platform=grant, tenancy=TENANCY)
    platform = Platform(subnets={SUBNET: "10.20.1.0/24"}, load_balancers={LB: {"gateway": BackendSetSpec()}})
    plan = plan_of(STACK)
    document = copy.deepcopy(central_document(plan))
    sha = sha_of("first release")
    images = " ".join(
        f"{c}=ghcr.io/dreamscape-ai/{c}:{sha}{DIGEST}"
        for c in ("auth-service", "user-service", "web-client", "gateway")
    )
    with OciApi(region="eu-frankfurt-1", principals=[deployer], platform=platform) as oci_api:
        env = environment(oci_api, deployer, key)
        variable = json.loads(env["DEPLOY_OCI"]) | {"environment": STACK}
        deploy_step(document)["env"][instances.API_OVERRIDE] = oci_api.url
        artifacts = Artifacts(
            infra={compose.path(STACK): "services: {}\n", central.DATA_PATH: rendered_file(plan, central.DATA_PATH)[1]}
        )
        outputs = {
            "environment": STACK,
            "deploy": "true",
            "components": json.dumps(["gateway"]),
            "source_repo": f"{SETTINGS.github_owner}/dreamscape-frontend",
            "ref": "refs/heads/main",
            "sha": sha,
        }
        with stand_in(SETTINGS) as api:
            api.branch_heads[(outputs["source_repo"].lower(), "main")] = sha
            github = dispatch_github(SETTINGS, api, "frontend-changed", {})
            github["token"] = JOB_TOKEN
            context = Context(
                github=github,
                # No VM_HOST, no SSH key, no known-hosts line: this environment has none.
                secrets={
                    central.TOKEN: DISPATCH_TOKEN,
                    "OCI_DEPLOY_CREDENTIAL_PRODUCTION": key.private_pem,
                    "APP_SECRETS_PRODUCTION": env["APP_SECRETS"],
                },
                vars={"DEPLOY_OCI_PRODUCTION": json.dumps(variable)},
                needs={
                    "resolve": {"result": "success", "outputs": outputs},
                    "build-test": {"result": "success", "outputs": {}},
                    "security-scan": {"result": "success", "outputs": {}},
                    "publish": {"result": "success", "outputs": {"images": images}},
                },
            )
            result = run_job(document, "deploy", context, extra_env=RETRY_ENV, uses=artifacts.table())
    assert result.status == "success", result.log
    assert "Deploy to production (container instances): deployed" in result.summary
    [instance] = [i for i in platform.instances.values() if i.state == "ACTIVE"]
    assert [b.name for b in platform.backends(LB, "gateway")] == [f"{instance.private_ip}:8080"]
    [create] = oci_api.requests_for("create-container-instance", status=200)
    body = json.loads(create.body)
    # The instance pulls with the job's own token, short-lived; the log never shows it.
    [pull] = body["imagePullSecrets"]
    assert (pull["secretType"], pull["registryEndpoint"]) == ("BASIC", "ghcr.io")
    assert base64.b64decode(pull["password"]).decode() == JOB_TOKEN
    assert JOB_TOKEN not in result.log + result.summary
    assert {c["displayName"]: c["imageUrl"] for c in body["containers"]}["gateway"] == (
        f"ghcr.io/dreamscape-ai/gateway:{sha}{DIGEST}"
    )
