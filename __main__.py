"""Composition root: settings, then one component per concern, then the stack outputs."""

import pulumi
import pulumi_github as github

from components import delivery, preflight, wiring
from components import settings as settings_module
from components.environment import cloudinit, compose, shapes
from components.environment.app_secrets import AppSecrets, AppSecretsArgs
from components.environment.container_platform import ContainerPlatform, ContainerPlatformArgs
from components.environment.deploy_access import DeployAccess, DeployAccessArgs, deploy_job_subjects
from components.environment.github_side import GithubSide, GithubSideArgs
from components.environment.instance import Instance, InstanceArgs, availability_domain
from components.environment.keys import Keys, KeysArgs
from components.environment.network import Network, NetworkArgs
from components.environment.program_store import ProgramStore, ProgramStoreArgs
from components.workflows import central, project

settings = settings_module.load()
# The shipped files' example values: planned offline (with a warning), refused for real.
example_warning = settings_module.check_examples(settings, offline=settings_module.engine_is_offline())
if example_warning:
    pulumi.log.warn(example_warning)
env = settings.environment
oci_settings = settings.oci
tags = {"project": "dreamscape", "environment": env, "managed-by": "pulumi"}
github_provider = github.Provider("github", owner=settings.github_owner)

# --- what must already exist, looked up before anything is registered ----------------------
github_facts = preflight.look_up(settings, pulumi.InvokeOptions(provider=github_provider))
for warning in preflight.warnings(github_facts, settings):
    pulumi.log.warn(warning)
for unused in settings.unused:
    pulumi.log.warn(f"{unused}: declared, and no component names it (it is made and started all the same)")
domain = availability_domain(
    oci_settings.compartment_id, oci_settings.shape, oci_settings.availability_domain, pulumi.InvokeOptions()
)

# --- this stack's environment: network, then a VM or a load balancer for container instances --
containers = oci_settings.container_instances
network = Network(
    f"{env}-network",
    NetworkArgs(
        environment=env,
        compartment_id=oci_settings.compartment_id,
        vcn_cidr=oci_settings.vcn_cidr,
        subnet_cidr=oci_settings.subnet_cidr,
        ssh_allowed_cidrs=oci_settings.ssh_allowed_cidrs,
        bastion_client_cidrs=oci_settings.bastion_client_cidrs,
        bastion_session_ttl_seconds=oci_settings.bastion_session_ttl_seconds,
        container_ports=tuple(c.port for c in settings.deployed_components if c.port) if containers else (),
        freeform_tags=tags,
    ),
)
app_secrets = AppSecrets(
    f"{env}-app-secrets",
    AppSecretsArgs(environment=env, secrets=settings.secrets, values=settings.secret_values),
)
deploy_auth = dict(
    environment=env,
    mode=settings.oci_deploy_auth,
    compartment_id=oci_settings.compartment_id,
    region=settings.oci_region,
    identity_domain_url=oci_settings.identity_domain_url,
    subjects=(
        deploy_job_subjects(github_facts.infra.full_name, github_facts.infra.repo_id, github_facts.owner_id, env)
        if github_facts.owner_id is not None
        else ()
    ),
    ci_user_email=oci_settings.ci_user_email,
    freeform_tags=tags,
)
vm = keys = platform = None
if containers:
    platform = ContainerPlatform(
        f"{env}-containers",
        ContainerPlatformArgs(
            environment=env,
            compartment_id=oci_settings.compartment_id,
            availability_domain=domain,
            shape=oci_settings.shape,
            ocpus=oci_settings.ocpus,
            memory_gbs=oci_settings.memory_gbs,
            subnet_id=network.subnet_id,
            subnet_domain=network.subnet_domain,
            load_balancer_nsg_id=network.nsg_id,
            app_nsg_id=network.app_nsg_id,
            components=settings.deployed_components,
            accessories=settings.accessories,
            app_secrets=app_secrets.value,
            freeform_tags=tags,
        ),
    )
    # The deploy job's OCI identity: container instances in this compartment, this load balancer's backends.
    deploy_access = DeployAccess(f"{env}-deploy-access", DeployAccessArgs(**deploy_auth, release=platform.release))
    host = platform.public_ip
else:
    keys = Keys(f"{env}-keys", KeysArgs(environment=env))
    program_store = ProgramStore(
        f"{env}-program",
        ProgramStoreArgs(
            environment=env,
            compartment_id=oci_settings.compartment_id,
            region=settings.oci_region,
            freeform_tags=tags,
        ),
    )
    user_data = cloudinit.user_data(
        env,
        keys.host_private_key_openssh,
        keys.host_public_key_openssh,
        keys.ci_public_key_openssh,
        oci_settings.admin_ssh_keys,
        program_store.url,
        program_store.sha256,
    )
    vm = Instance(
        f"{env}-vm",
        InstanceArgs(
            environment=env,
            compartment_id=oci_settings.compartment_id,
            shape=oci_settings.shape,
            ocpus=oci_settings.ocpus,
            memory_gbs=oci_settings.memory_gbs,
            boot_volume_gbs=oci_settings.boot_volume_gbs,
            subnet_id=network.subnet_id,
            nsg_ids=[network.nsg_id],
            user_data=user_data,
            image_id=oci_settings.image_id,
            ubuntu_version=oci_settings.ubuntu_version,
            boot_volume_backups=oci_settings.boot_volume_backups,
            availability_domain=domain,
            availability_domain_pinned=oci_settings.availability_domain is not None,
            freeform_tags=tags,
        ),
    )
    # The deploy job's OCI identity: sessions on this bastion to this VM, nothing else.
    deploy_access = DeployAccess(
        f"{env}-deploy-access",
        DeployAccessArgs(
            **deploy_auth, bastion_id=network.bastion_id, instance_id=vm.instance_id, vm_private_ip=vm.private_ip
        ),
    )
    host = vm.public_ip

# --- what the infra repository's pipeline needs to deploy there ----------------------------
# The environment's address: https://<domain> when the stack sets `edge.domain`, else plain HTTP
# on the reserved IP (the VM's, or the load balancer's).
url = host.apply(settings.edge.url)
github_side = GithubSide(
    f"{env}-github",
    GithubSideArgs(
        environment=env,
        repository=settings.infra_repository,
        deploy_branch=github_facts.infra.default_branch,
        layout=settings.deploy_secret_layout,
        # The deploy job reaches the VM through the bastion, at its address in the subnet.
        host=vm.private_ip if vm else None,
        ci_private_key_openssh=keys.ci_private_key_openssh if keys else None,
        host_public_key_openssh=keys.host_public_key_openssh if keys else None,
        platform=shapes.platform_of(oci_settings.shape),
        url=url,
        oci_credential=deploy_access.credential,
        oci_access=deploy_access.variable,
        app_secrets=app_secrets.value,
        reviewers=settings.protection.reviewers,
        wait_timer=settings.protection.wait_timer,
    ),
    opts=pulumi.ResourceOptions(providers=[github_provider]),
)

# --- with fileDelivery: pullRequest, this stack's proposal for the infra repository's default
# branch: the wiring owner's branch takes the central pipeline and its compose file; every other
# stack proposes its compose file on a branch of its own, so no two stacks share a pull request.
writes_compose = compose.has_services(settings.source_repositories)
infra_proposal = None
if settings.file_delivery == delivery.PULL_REQUEST and (settings.owns_wiring or writes_compose):
    default_branch = github_facts.infra.default_branch
    infra_proposal = delivery.Proposal(
        "infra-proposal",
        delivery.ProposalArgs(
            repository=settings.infra_repository,
            target=default_branch,
            head=delivery.program_branch(default_branch, None if settings.owns_wiring else env),
            stack=settings.stack,
            owner=settings.github_owner,
        ),
        opts=pulumi.ResourceOptions(providers=[github_provider]),
    )

# --- the shared wiring, on the one stack that owns it ----------------------------------------
workflow_files: list[str] = []
token_needs = list(github_side.required_token_permissions)
proposals: list[delivery.Proposal] = []
if settings.owns_wiring and settings.dispatch_secret is not None and settings.pipeline_secret is not None:
    central_args = central.CentralArgs.from_settings(settings)
    shared_wiring = wiring.SharedWiring(
        "wiring",
        wiring.SharedWiringArgs(
            owner=settings.github_owner,
            infra_repository=settings.infra_repository,
            source_repositories=settings.source_repositories,
            dispatch_token=settings.dispatch_secret,
            pipeline_token=settings.pipeline_secret,
            auth=settings.auth,
            repository_rules=settings.repository_rules if settings.repository_rules.enabled else None,
            dispatch_token_scope=settings.dispatch_token_scope,
            commit=settings.commit,
            github=github_facts,
            create_missing_branches=settings.create_missing_branches,
            infra_ruleset=settings.infra_ruleset,
            actions_settings=settings.actions_settings,
            # This project's own workflows run in the infra repository too (the README's layout).
            infra_workflows=project.render() if settings.actions_settings else {},
            infra_files={
                central.PATH: central.render(central_args),
                central.DATA_PATH: central.data_file(central_args),
            },
            file_delivery=settings.file_delivery,
            stack=settings.stack,
            infra_proposal=infra_proposal,
        ),
        opts=pulumi.ResourceOptions(providers=[github_provider]),
    )
    workflow_files = shared_wiring.workflow_files
    token_needs = list(shared_wiring.required_token_permissions) + token_needs
    proposals += shared_wiring.proposals

# The environment's compose file, next to the central pipeline that deploys with it.
compose_file = None
if writes_compose:
    compose_file = compose.ComposeFile(
        "compose",
        compose.ComposeFileArgs(
            infra_repository=settings.infra_repository,
            environment=settings.environment,
            source_repositories=settings.source_repositories,
            commit=settings.commit,
            branch=github_facts.infra.default_branch,
            proposal=infra_proposal,
            edge=settings.edge,
            accessories=settings.accessories,
        ),
        opts=pulumi.ResourceOptions(providers=[github_provider]),
    )

# Every file of the infra repository's default branch is on the proposal's branch: propose it.
if infra_proposal is not None:
    infra_proposal.open()
    proposals.append(infra_proposal)
    if not settings.owns_wiring:
        token_needs += delivery.required_token_permissions()

pulumi.export("environment", env)
pulumi.export("ownsWiring", settings.owns_wiring)
pulumi.export("target", oci_settings.target)
pulumi.export("host", host)
pulumi.export("url", url)
pulumi.export("deployPolicy", deploy_access.policy_statements)
if vm and keys:
    pulumi.export("sshCommand", pulumi.Output.concat(f"ssh {cloudinit.DEFAULT_USER}@", vm.public_ip))
    pulumi.export("instanceId", vm.instance_id)
    pulumi.export("privateIp", vm.private_ip)
    pulumi.export("bastionId", network.bastion_id)
    pulumi.export("hostKeyFingerprint", keys.host_key_fingerprint)
if platform:
    pulumi.export("loadBalancerId", platform.load_balancer_id)
    pulumi.export("accessoryInstanceIds", platform.accessory_ids)
pulumi.export("workflowFiles", workflow_files)
pulumi.export("branchesCreated", list(github_facts.branches_to_create))
pulumi.export("availabilityDomain", vm.availability_domain if vm else domain)
pulumi.export("githubTokenNeeds", token_needs)
# Which secrets each component and accessory gets: names only, never a value.
pulumi.export(
    "appSecrets",
    {
        name: list(settings.secrets_of(name))
        for name in [*(c.name for c in settings.deployed_components), *(a.name for a in settings.accessories)]
        if settings.secrets_of(name)
    },
)
pulumi.export("composeFile", compose_file.location if compose_file else None)
pulumi.export("pendingPullRequests", delivery.pending([p.reference for p in proposals]))
