"""Test harness: real servers driven for the tests, and stand-ins, strict like the real thing,
for what this machine cannot run for real.

- `github_api`: a local GitHub REST API on 127.0.0.1 that records every request.
- `oci_api`: the OCI APIs a deploy job calls on 127.0.0.1 (GitHub's OIDC token endpoint, an
  identity domain's token exchange, the Bastion API), checking signatures and bodies with the OCI SDK.
- `workflow`: runs a rendered workflow job's `run:` steps with real bash, as a runner would.
- `sshd`: a real OpenSSH server with the deploy program behind the CI key.
- `engine`: registries on 127.0.0.1 and busybox images for the real Docker engine.
"""
