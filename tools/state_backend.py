"""Bootstrap the Pulumi state backend: a private, versioned bucket on OCI Object Storage.

    python tools/state_backend.py --namespace NS --region REGION --bucket BUCKET
    make state-backend ARGS='--namespace NS --region REGION --bucket BUCKET'

Talks to Object Storage's Amazon S3 Compatibility API with boto3. The credentials are an
OCI Customer Secret Key, read from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY only (never
from the command line, never from ~/.aws, never printed).

Idempotent: it creates the bucket when missing, turns versioning on for a bucket it creates,
blocks public access, and on a bucket already set up it changes nothing and says so. An
existing bucket whose versioning is off or suspended is refused unless
--enable-versioning-on-existing is given: state written there so far has no history. Last,
it prints the exact `pulumi login` line for this bucket.

OCI's published list of S3-compatible bucket operations is short (create, delete, head,
location, list); an operation the endpoint answers with NotImplemented is handled here:
- PutPublicAccessBlock: OCI buckets are private unless someone makes them public (public
  access type NoPublicAccess, no object ACLs), so the tool reports that and goes on, with the
  OCI CLI command that shows the bucket's public access type.
- Bucket versioning: the tool stops (exit 7) with the OCI CLI command that turns it on
  natively; run that, then run this again with --versioning-set-natively.

Exit codes:
  0  the bucket is ready (created, updated or unchanged); the login line is printed
  1  any other failure (the message names the S3 operation and the endpoint's error code)
  2  bad arguments (argparse usage errors, a malformed namespace, region, bucket or URL)
  3  credentials missing or rejected by the endpoint
  4  endpoint unreachable (DNS, refused connection, timeout)
  5  existing bucket with versioning off or suspended, and --enable-versioning-on-existing not given
  6  credentials accepted but not allowed (AccessDenied): check the user's IAM policy
  7  the endpoint does not implement the S3 versioning API; see --versioning-set-natively
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    CREDENTIALS = 3
    UNREACHABLE = 4
    VERSIONING_OFF = 5
    FORBIDDEN = 6
    UNSUPPORTED = 7


NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
# Stricter than OCI's own rule (which allows capitals and underscores): the bucket becomes
# the host part of Pulumi's s3:// URL, so it keeps to S3's DNS-safe names.
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - the variable's name, not a value

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
}
_UNSUPPORTED_CODES = {"NotImplemented", "MethodNotAllowed"}
_MISSING_BUCKET_CODES = {"NoSuchBucket", "404", "NotFound"}


class BootstrapError(Exception):
    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    namespace: str
    region: str
    bucket: str
    endpoint_url: str

    @property
    def endpoint_host(self) -> str:
        return urlparse(self.endpoint_url).netloc

    @property
    def login_url(self) -> str:
        """Pulumi's backend URL; the endpoint is named by host, which Pulumi reaches over HTTPS."""
        return f"s3://{self.bucket}?endpoint={self.endpoint_host}&region={self.region}&s3ForcePathStyle=true"

    @property
    def login_command(self) -> str:
        return f"pulumi login '{self.login_url}'"


@dataclass
class Report:
    bucket: str = ""
    versioning: str = ""
    public_access: str = ""
    notes: list[str] = field(default_factory=list)
    changed: bool = False


def oci_endpoint(namespace: str, region: str) -> str:
    return f"https://{namespace}.compat.objectstorage.{region}.oraclecloud.com"


def client_for(target: Target, access_key: str, secret_key: str, session: boto3.session.Session | None = None) -> Any:
    """An S3 client for Object Storage's S3 Compatibility API."""
    config = Config(
        region_name=target.region,
        signature_version="s3v4",
        # The bucket goes in the path: <namespace>.compat... carries no per-bucket names.
        s3={"addressing_style": "path"},
        # Checksums only where S3 requires them; recent boto3 adds them to every upload by
        # default, which S3-compatible stores do not all accept.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=30,
    )
    session = session or boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=target.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _unsupported(error: ClientError) -> bool:
    return _code(error) in _UNSUPPORTED_CODES or _status(error) == 501


def explain(error: Exception, target: Target, operation: str) -> BootstrapError:
    """One clear line for a failed call; never includes a credential."""
    if isinstance(error, NoCredentialsError):
        return BootstrapError(Exit.CREDENTIALS, f"no credentials: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return BootstrapError(
            Exit.UNREACHABLE,
            f"cannot reach {target.endpoint_url} ({type(error).__name__}): "
            "check --namespace and --region, and that this machine can reach it",
        )
    if isinstance(error, ClientError):
        code, status = _code(error), _status(error)
        if code in _CREDENTIAL_CODES:
            return BootstrapError(
                Exit.CREDENTIALS,
                f"the endpoint rejected the credentials ({code}): {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} "
                f"must be a Customer Secret Key of a user in the tenancy whose namespace is {target.namespace}",
            )
        if code == "AccessDenied" or status == 403:
            return BootstrapError(
                Exit.FORBIDDEN,
                f"{operation} on bucket {target.bucket} was refused ({code or status}): the key works, but its "
                "user needs `manage buckets` and `manage objects` in the S3 designated compartment",
            )
        message = error.response.get("Error", {}).get("Message", "")
        return BootstrapError(Exit.ERROR, f"{operation} failed: {code or status} {message}".rstrip())
    if isinstance(error, BotoCoreError):
        return BootstrapError(Exit.ERROR, f"{operation} failed: {type(error).__name__}")
    raise error


def _call(client: Any, target: Target, operation: str, **kwargs: Any) -> dict[str, Any]:
    try:
        return getattr(client, operation)(**kwargs)
    except (BotoCoreError, ClientError) as error:
        raise explain(error, target, operation) from error


def bucket_exists(client: Any, target: Target) -> bool:
    # GetBucketLocation rather than HeadBucket: a HEAD answer has no body, so a 403 would not
    # say whether the key or the permission is wrong.
    try:
        client.get_bucket_location(Bucket=target.bucket)
        return True
    except ClientError as error:
        if _code(error) in _MISSING_BUCKET_CODES:
            return False
        raise explain(error, target, "get_bucket_location") from error
    except BotoCoreError as error:
        raise explain(error, target, "get_bucket_location") from error


def bootstrap(
    client: Any,
    target: Target,
    *,
    enable_versioning_on_existing: bool = False,
    versioning_set_natively: bool = False,
) -> Report:
    report = Report()
    created = False
    if bucket_exists(client, target):
        report.bucket = "exists (unchanged)"
    else:
        try:
            client.create_bucket(Bucket=target.bucket, CreateBucketConfiguration={"LocationConstraint": target.region})
            created = report.changed = True
            report.bucket = "created"
        except ClientError as error:
            if _code(error) != "BucketAlreadyOwnedByYou":  # created meanwhile by another run
                raise explain(error, target, "create_bucket") from error
            report.bucket = "exists (unchanged)"
        except BotoCoreError as error:
            raise explain(error, target, "create_bucket") from error

    _versioning(client, target, report, created, enable_versioning_on_existing, versioning_set_natively)
    _public_access(client, target, report)
    return report


def _versioning(
    client: Any, target: Target, report: Report, created: bool, enable_on_existing: bool, set_natively: bool
) -> None:
    native = (
        f"oci os bucket update --namespace-name {target.namespace} --bucket-name {target.bucket} --versioning Enabled"
    )
    try:
        status = client.get_bucket_versioning(Bucket=target.bucket).get("Status")
    except ClientError as error:
        if not _unsupported(error):
            raise explain(error, target, "get_bucket_versioning") from error
        if set_natively:
            report.versioning = "set with the OCI API (--versioning-set-natively; this endpoint cannot show it)"
            return
        raise BootstrapError(
            Exit.UNSUPPORTED,
            f"this endpoint does not implement S3 bucket versioning ({_code(error) or _status(error)}): "
            f"turn it on with `{native}`, then run again with --versioning-set-natively",
        ) from error
    except BotoCoreError as error:
        raise explain(error, target, "get_bucket_versioning") from error

    if status == "Enabled":
        report.versioning = "enabled (unchanged)"
        return
    if not created and not enable_on_existing:
        state = "suspended" if status == "Suspended" else "off"
        raise BootstrapError(
            Exit.VERSIONING_OFF,
            f"bucket {target.bucket} exists with versioning {state}, so earlier states could not be recovered; "
            "run again with --enable-versioning-on-existing to turn it on (objects already there keep no history)",
        )
    _call(client, target, "put_bucket_versioning", Bucket=target.bucket, VersioningConfiguration={"Status": "Enabled"})
    confirmed = _call(client, target, "get_bucket_versioning", Bucket=target.bucket).get("Status")
    if confirmed != "Enabled":
        raise BootstrapError(Exit.ERROR, f"versioning still reads {confirmed or 'off'} after turning it on")
    report.versioning = "enabled"
    report.changed = True


def _public_access(client: Any, target: Target, report: Report) -> None:
    check = (
        f"oci os bucket get --namespace-name {target.namespace} --bucket-name {target.bucket} "
        "--query 'data.\"public-access-type\"'"
    )
    try:
        current = client.get_public_access_block(Bucket=target.bucket)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        if _unsupported(error):
            report.public_access = "private (no public access type set; this endpoint has no public access block API)"
            report.notes.append(
                "OCI buckets are private unless made public, and have no object ACLs; "
                f"to confirm, `{check}` must print NoPublicAccess"
            )
            return
        if _code(error) != "NoSuchPublicAccessBlockConfiguration":
            raise explain(error, target, "get_public_access_block") from error
        current = {}
    except BotoCoreError as error:
        raise explain(error, target, "get_public_access_block") from error

    if all(current.get(key) is True for key in PUBLIC_ACCESS_BLOCK):
        report.public_access = "blocked (unchanged)"
        return
    try:
        client.put_public_access_block(Bucket=target.bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    except ClientError as error:
        if not _unsupported(error):
            raise explain(error, target, "put_public_access_block") from error
        report.public_access = "private (this endpoint has no public access block API)"
        report.notes.append(
            f"OCI buckets are private unless made public; to confirm, `{check}` must print NoPublicAccess"
        )
        return
    except BotoCoreError as error:
        raise explain(error, target, "put_public_access_block") from error
    report.public_access = "blocked"
    report.changed = True


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Target]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Credentials: a Customer Secret Key in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )
    parser.add_argument("--namespace", required=True, help="the tenancy's Object Storage namespace")
    parser.add_argument("--region", required=True, help="OCI region identifier, e.g. eu-frankfurt-1")
    parser.add_argument("--bucket", required=True, help="bucket name for the Pulumi state")
    parser.add_argument(
        "--enable-versioning-on-existing",
        action="store_true",
        help="turn versioning on for an existing bucket where it is off or suspended",
    )
    parser.add_argument(
        "--versioning-set-natively",
        action="store_true",
        help="versioning was turned on with the OCI CLI or Console; do not ask the S3 API about it",
    )
    parser.add_argument(
        "--endpoint-url",
        help="S3 endpoint to use instead of https://<namespace>.compat.objectstorage.<region>.oraclecloud.com",
    )
    args = parser.parse_args(argv)
    for name, pattern in (("namespace", NAMESPACE_PATTERN), ("region", REGION_PATTERN), ("bucket", BUCKET_PATTERN)):
        if not re.fullmatch(pattern, getattr(args, name)):
            parser.error(f"--{name} {getattr(args, name)!r} does not match {pattern}")
    endpoint = args.endpoint_url or oci_endpoint(args.namespace, args.region)
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
        parser.error(f"--endpoint-url {endpoint!r} must be http(s)://host[:port]")
    return args, Target(args.namespace, args.region, args.bucket, endpoint.rstrip("/"))


def main(argv: list[str] | None = None, session: boto3.session.Session | None = None) -> int:
    args, target = parse_args(argv)
    access_key = os.environ.get(ACCESS_KEY_ENV, "")
    secret_key = os.environ.get(SECRET_KEY_ENV, "")
    if not access_key or not secret_key:
        print(
            f"error: no credentials: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} to a Customer Secret Key "
            "(its access key and its secret key)",
            file=sys.stderr,
        )
        return Exit.CREDENTIALS
    client = client_for(target, access_key, secret_key, session)
    try:
        report = bootstrap(
            client,
            target,
            enable_versioning_on_existing=args.enable_versioning_on_existing,
            versioning_set_natively=args.versioning_set_natively,
        )
    except BootstrapError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code

    print(f"endpoint: {target.endpoint_url}")
    print(f"bucket {target.bucket}: {report.bucket}")
    print(f"versioning: {report.versioning}")
    print(f"public access: {report.public_access}")
    for note in report.notes:
        print(f"note: {note}")
    print("result: " + ("changed" if report.changed else "unchanged, nothing to do"))
    print("\nPoint Pulumi at it (with the same two variables set):")
    print(target.login_command)
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
