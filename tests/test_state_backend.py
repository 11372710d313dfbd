"""The state backend bootstrap against moto's S3 server on 127.0.0.1, with request signing checked.

moto plays Object Storage's S3 Compatibility API. Its IAM authentication is switched on
(`/moto-api/reset-auth`), so every request must carry a valid signature from a key moto
knows, and the key's user must be allowed the action: a wrong secret, an unknown key or a
user without permission fail the way they fail on the real endpoint.

The endpoint's NotImplemented answers (OCI lists no versioning or public access block in its
S3 operations) are played by botocore's Stubber, which checks each request against the S3
model and the expected order of calls.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from tests.conftest import ROOT
from tools import state_backend
from tools.state_backend import Exit

TOOL = ROOT / "tools" / "state_backend.py"
NAMESPACE = "axdreamscape"
REGION = "eu-frankfurt-1"
MUTATING = {"CreateBucket", "PutBucketVersioning", "PutPublicAccessBlock", "DeleteBucket", "PutBucketAcl"}


@dataclass(frozen=True)
class S3Server:
    url: str
    access_key: str
    secret_key: str
    denied_access_key: str
    denied_secret_key: str

    def admin(self):
        """A client with the allowed key, for arranging and inspecting buckets."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        env.update(overrides)
        return env


def _policy(effect: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": "s3:*", "Resource": "*"}]})


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        # Users and keys are made before authentication is switched on.
        iam = boto3.client(
            "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        keys = {}
        for user, effect in (("state-admin", "Allow"), ("no-access", "Deny")):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=_policy(effect))
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield S3Server(
            url,
            keys["state-admin"]["AccessKeyId"],
            keys["state-admin"]["SecretAccessKey"],
            keys["no-access"]["AccessKeyId"],
            keys["no-access"]["SecretAccessKey"],
        )
    finally:
        # moto's settings are process-wide: leave authentication off for other tests.
        requests.post(f"{url}/moto-api/reset-auth", data=b"inf", timeout=10)
        server.stop()


_names = count()


@pytest.fixture
def bucket() -> str:
    return f"dreamscape-state-{next(_names)}"


def run(s3: S3Server, bucket: str, *extra: str, env: dict[str, str] | None = None, url: str | None = None):
    argv = ["--namespace", NAMESPACE, "--region", REGION, "--bucket", bucket, "--endpoint-url", url or s3.url, *extra]
    return subprocess.run(
        [sys.executable, str(TOOL), *argv],
        env=env if env is not None else s3.env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def versioning(s3: S3Server, bucket: str) -> str | None:
    return s3.admin().get_bucket_versioning(Bucket=bucket).get("Status")


def assert_secrets_hidden(s3: S3Server, result) -> None:
    for secret in (s3.secret_key, s3.denied_secret_key):
        assert secret not in result.stdout + result.stderr


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    return lines[0]


def test_creates_a_versioned_private_bucket_and_prints_the_login_line(s3, bucket):
    result = run(s3, bucket)

    assert result.returncode == Exit.OK, result.stderr
    admin = s3.admin()
    assert bucket in [b["Name"] for b in admin.list_buckets()["Buckets"]]
    assert versioning(s3, bucket) == "Enabled"
    block = admin.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == state_backend.PUBLIC_ACCESS_BLOCK
    assert f"bucket {bucket}: created" in result.stdout
    assert "result: changed" in result.stdout
    host = s3.url.removeprefix("http://")
    assert result.stdout.strip().splitlines()[-1] == (
        f"pulumi login 's3://{bucket}?endpoint={host}&region={REGION}&s3ForcePathStyle=true'"
    )
    assert_secrets_hidden(s3, result)


def test_login_line_names_the_oci_endpoint():
    target = state_backend.Target(
        "axdreamscape", "eu-frankfurt-1", "pulumi-state", state_backend.oci_endpoint("axdreamscape", "eu-frankfurt-1")
    )
    assert target.login_command == (
        "pulumi login 's3://pulumi-state?endpoint=axdreamscape.compat.objectstorage.eu-frankfurt-1.oraclecloud.com"
        "&region=eu-frankfurt-1&s3ForcePathStyle=true'"
    )


def test_second_run_changes_nothing(s3, bucket, monkeypatch, capsys):
    assert run(s3, bucket).returncode == Exit.OK
    before = s3.admin().get_bucket_versioning(Bucket=bucket)["Status"]

    # Second run in-process, with every S3 operation the tool sends recorded.
    sent: list[str] = []
    session = boto3.session.Session()
    session.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    argv = ["--namespace", NAMESPACE, "--region", REGION, "--bucket", bucket, "--endpoint-url", s3.url]
    code = state_backend.main(argv, session=session)
    out = capsys.readouterr().out

    assert code == Exit.OK
    assert sent == ["GetBucketLocation", "GetBucketVersioning", "GetPublicAccessBlock"]
    assert not MUTATING & set(sent)
    assert "result: unchanged, nothing to do" in out
    assert "versioning: enabled (unchanged)" in out
    assert versioning(s3, bucket) == before == "Enabled"
    assert [b["Name"] for b in s3.admin().list_buckets()["Buckets"]].count(bucket) == 1


@pytest.mark.parametrize("state", ["off", "Suspended"])
def test_existing_bucket_without_versioning_is_refused_unless_told(s3, bucket, state):
    admin = s3.admin()
    admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    if state == "Suspended":
        admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})

    refused = run(s3, bucket)

    assert refused.returncode == Exit.VERSIONING_OFF
    line = one_line_error(refused)
    assert f"bucket {bucket} exists with versioning {state.lower()}" in line
    assert "--enable-versioning-on-existing" in line
    # Refused before touching anything.
    assert versioning(s3, bucket) == (None if state == "off" else "Suspended")
    with pytest.raises(admin.exceptions.ClientError, match="NoSuchPublicAccessBlockConfiguration"):
        admin.get_public_access_block(Bucket=bucket)

    told = run(s3, bucket, "--enable-versioning-on-existing")

    assert told.returncode == Exit.OK, told.stderr
    assert versioning(s3, bucket) == "Enabled"
    assert f"bucket {bucket}: exists (unchanged)" in told.stdout
    assert "versioning: enabled" in told.stdout
    assert "public access: blocked" in told.stdout


@pytest.mark.parametrize("which", ["wrong secret", "unknown key"])
def test_bad_credentials_give_one_line_and_exit_3(s3, bucket, which):
    env = (
        s3.env(AWS_SECRET_ACCESS_KEY="not-the-secret-key")
        if which == "wrong secret"
        else s3.env(AWS_ACCESS_KEY_ID="AKIADOESNOTEXIST000")
    )
    result = run(s3, bucket, env=env)

    assert result.returncode == Exit.CREDENTIALS
    line = one_line_error(result)
    expected = "SignatureDoesNotMatch" if which == "wrong secret" else "InvalidAccessKeyId"
    assert f"the endpoint rejected the credentials ({expected})" in line
    assert "not-the-secret-key" not in result.stderr
    assert_secrets_hidden(s3, result)
    assert bucket not in [b["Name"] for b in s3.admin().list_buckets()["Buckets"]]


def test_missing_credentials_stop_before_any_request(s3, bucket):
    env = {k: v for k, v in s3.env().items() if k != "AWS_SECRET_ACCESS_KEY"}
    result = run(s3, bucket, env=env)

    assert result.returncode == Exit.CREDENTIALS
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in one_line_error(result)


def test_key_without_permission_exits_6(s3, bucket):
    env = s3.env(AWS_ACCESS_KEY_ID=s3.denied_access_key, AWS_SECRET_ACCESS_KEY=s3.denied_secret_key)
    result = run(s3, bucket, env=env)

    assert result.returncode == Exit.FORBIDDEN
    line = one_line_error(result)
    assert f"get_bucket_location on bucket {bucket} was refused (AccessDenied)" in line
    assert_secrets_hidden(s3, result)


def test_unreachable_endpoint_exits_4(s3, bucket):
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"

    result = run(s3, bucket, url=closed)

    assert result.returncode == Exit.UNREACHABLE
    line = one_line_error(result)
    assert f"cannot reach {closed} (EndpointConnectionError)" in line
    assert_secrets_hidden(s3, result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--namespace", "Ax Dreamscape"], "--namespace"),
        (["--region", "frankfurt"], "--region"),
        (["--bucket", "Pulumi_State"], "--bucket"),
        (["--endpoint-url", "ftp://127.0.0.1:9"], "--endpoint-url"),
    ],
)
def test_bad_arguments_exit_2(s3, args, message):
    base = {"--namespace": NAMESPACE, "--region": REGION, "--bucket": "pulumi-state"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [item for pair in base.items() for item in pair]
    result = subprocess.run(
        [sys.executable, str(TOOL), *argv], env=s3.env(), capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == Exit.USAGE
    assert message in result.stderr


# --- an endpoint without the versioning and public access block APIs (OCI's published list) ---


def _stubbed(target: state_backend.Target):
    client = state_backend.client_for(target, "AKIAEXAMPLE", "example-secret")
    return client, Stubber(client)


def _not_implemented(stub: Stubber, operation: str, bucket: str, **params) -> None:
    stub.add_client_error(
        operation,
        service_error_code="NotImplemented",
        service_message="A header you provided implies functionality that is not implemented",
        http_status_code=501,
        expected_params={"Bucket": bucket, **params},
    )


@pytest.fixture
def oci_target() -> state_backend.Target:
    return state_backend.Target(NAMESPACE, REGION, "pulumi-state", state_backend.oci_endpoint(NAMESPACE, REGION))


def test_endpoint_without_versioning_api_stops_with_the_native_command(oci_target):
    client, stub = _stubbed(oci_target)
    stub.add_response("get_bucket_location", {"LocationConstraint": REGION}, {"Bucket": "pulumi-state"})
    _not_implemented(stub, "get_bucket_versioning", "pulumi-state")
    with stub, pytest.raises(state_backend.BootstrapError) as raised:
        state_backend.bootstrap(client, oci_target)
    stub.assert_no_pending_responses()
    assert raised.value.code == Exit.UNSUPPORTED
    assert f"oci os bucket update --namespace-name {NAMESPACE} --bucket-name pulumi-state --versioning Enabled" in str(
        raised.value
    )
    assert "--versioning-set-natively" in str(raised.value)


def test_versioning_set_natively_and_no_public_access_block_api(oci_target):
    client, stub = _stubbed(oci_target)
    stub.add_client_error(
        "get_bucket_location", service_error_code="NoSuchBucket", http_status_code=404,
        expected_params={"Bucket": "pulumi-state"},
    )  # fmt: skip
    stub.add_response(
        "create_bucket",
        {"Location": "/pulumi-state"},
        {"Bucket": "pulumi-state", "CreateBucketConfiguration": {"LocationConstraint": REGION}},
    )
    _not_implemented(stub, "get_bucket_versioning", "pulumi-state")
    _not_implemented(stub, "get_public_access_block", "pulumi-state")
    with stub:
        report = state_backend.bootstrap(client, oci_target, versioning_set_natively=True)
    stub.assert_no_pending_responses()
    assert report.bucket == "created"
    assert report.versioning.startswith("set with the OCI API")
    assert report.public_access.startswith("private")
    assert any("NoPublicAccess" in note for note in report.notes)
