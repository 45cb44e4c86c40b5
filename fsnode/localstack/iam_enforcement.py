"""IAM in the local stack's moto server: every request is checked against the caller's
policies, so a grant the synthesized template lacks fails here as it would in AWS.

moto can authenticate requests once enforcement is on (``/moto-api/reset-auth``), but
its authorization compares the action only: to it every resource but S3's is ``*``,
and it cannot read a presigned URL. This module, installed in the moto server process
as the other patches are, replaces that step:

- the resource of each request is worked out per service (a DynamoDB table or index,
  each item of a transaction as its own action, a state machine or execution, a
  Lambda function, a secret, the CA), as IAM sees it;
- presigned S3 URLs are authenticated (the SigV4 query signature, expiry, session
  token) and authorized as the signer;
- the caller's identity policies are evaluated by ``iam_policy``;
- refusals carry AWS's error (``AccessDeniedException``; S3's ``AccessDenied``).

Callers are the local stack's root user (``LOCAL_CREDENTIALS``, allowed everything: it
builds the stack and stands for an operator) and the roles each component assumes.
Step Functions' own calls (invoking the workflow's Lambdas) are signed as the state
machine's role; a Lambda invoked in-process runs as its function's role
(``lambda_dispatch`` asks ``assumed`` for the credentials).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple, NoReturn
from urllib.parse import parse_qsl, unquote, urlparse
from xml.etree import ElementTree

from fsnode.localstack import iam_policy, iam_signatures
from fsnode.localstack.moto_patches import Patches
from fsnode.localstack.resources import LOCAL_CREDENTIALS

ACCOUNT = "123456789012"  # moto's default account: every local ARN names it
ROOT_USER = "fsnode-local-root"
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
# Actions IAM evaluates per item of a transaction (there is no TransactWriteItems action).
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
# awsJson services answer AccessDeniedException as 400, Lambda (REST) as 403.
_STATUS_BY_SERVICE = {"lambda": 403}
# API operations whose IAM action has another name.
_IAM_ACTION = {"lambda:Invoke": "lambda:InvokeFunction"}

_patches = Patches()
_assumed: dict[str, Any] = {}
_assumed_lock = threading.Lock()


class Requested(NamedTuple):
    """One authorization IAM makes for a request."""

    action: str
    resource: str
    context: dict[str, str]


def install() -> None:
    """Patch moto's authorization in this process, and create the root user."""
    from moto.core.authorization import ActionAuthenticatorMixin

    if _patches.active:
        return
    _create_root_user()
    _patches.set(
        ActionAuthenticatorMixin, "_authenticate_and_authorize_action", _authenticate_and_authorize
    )
    _sign_step_functions_calls_as_the_machine_role()


def assumed(role_arn: str, session_name: str) -> Any:
    """Credentials of ``role_arn``, assumed once per process from moto's STS (botocore
    ``Credentials``). moto does not expire them."""
    from botocore.credentials import Credentials
    from moto.sts.models import sts_backends

    with _assumed_lock:
        hit = _assumed.get(role_arn)
        if hit is None:
            role = sts_backends[ACCOUNT]["aws"].assume_role(
                region_name="us-east-1",
                role_session_name=session_name[:64],
                role_arn=role_arn,
                policy="",
                duration=43200,
                external_id="",
            )
            hit = Credentials(role.access_key_id, role.secret_access_key, role.session_token)
            _assumed[role_arn] = hit
        return hit


def _create_root_user() -> None:
    from moto.iam.models import iam_backends

    backend = iam_backends[ACCOUNT]["aws"]
    backend.create_user(region_name="us-east-1", user_name=ROOT_USER)
    key = backend.create_access_key(ROOT_USER)
    key.access_key_id = LOCAL_CREDENTIALS["aws_access_key_id"]
    key.secret_access_key = LOCAL_CREDENTIALS["aws_secret_access_key"]
    backend.put_user_policy(ROOT_USER, "everything", _ALLOW_ALL)


def _authenticate_and_authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return
    if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    if self.method == "OPTIONS" and _is_s3(self):
        return  # a CORS preflight: S3 answers it from the bucket's CORS rules, unsigned
    action = self._get_action()
    action = action[0] if isinstance(action, list) else action
    if "Authorization" in self.headers:
        request = iam_signatures.header_signed(self, iam_request_cls, action)
        request.check_signature()
        access_key, service = request._access_key, request._service
    else:
        presigned = iam_signatures.presigned(self, ACCOUNT, _log)
        if presigned is None:
            _deny_anonymous(self)
        access_key, service = presigned
    if f"{service}:{action}" == "sts:GetCallerIdentity":
        return
    policies = [_document(policy) for policy in access_key.collect_policies()]
    for wanted in requested(self, service, str(action), resource):
        if not iam_policy.allows(policies, wanted.action, wanted.resource, wanted.context):
            _deny(self, service, access_key.arn, wanted)


def requested(response: Any, service: str, action: str, resource: str) -> Iterator[Requested]:
    """What IAM authorizes for this request: ``(action, resource ARN, context)`` each."""
    region = getattr(response, "region", None) or "us-east-1"
    prefix = f"arn:aws:{service}:{region}:{ACCOUNT}"
    if service == "dynamodb":
        yield from _dynamodb(action, _json_body(response), prefix)
    elif service == "states":
        body = _json_body(response)
        arn = body.get("executionArn") or body.get("stateMachineArn") or "*"
        yield Requested(f"states:{action}", str(arn), {})
    elif service == "lambda":
        name = unquote(urlparse(response.uri).path).split("/functions/", 1)[-1].split("/")[0]
        arn = name if name.startswith("arn:") else f"{prefix}:function:{name}"
        wanted = _IAM_ACTION.get(f"lambda:{action}", f"lambda:{action}")
        yield Requested(wanted, arn.split(":$")[0], {})
    elif service == "secretsmanager":
        yield Requested(
            f"secretsmanager:{action}",
            _secret_arn(str(_json_body(response).get("SecretId", "*")), region),
            {},
        )
    elif service == "acm-pca":
        yield Requested(
            f"acm-pca:{action}", str(_json_body(response).get("CertificateAuthorityArn", "*")), {}
        )
    elif service == "acm":
        yield Requested(f"acm:{action}", str(_json_body(response).get("CertificateArn", "*")), {})
    elif service == "route53":
        zone = unquote(urlparse(response.uri).path).split("/hostedzone/", 1)[-1].split("/")[0]
        yield Requested(f"route53:{action}", f"arn:aws:route53:::hostedzone/{zone}", {})
    elif service == "s3":
        yield from _s3(response, action, resource)
    else:
        yield Requested(f"{service}:{action}", resource, {})


def _dynamodb(action: str, body: dict[str, Any], prefix: str) -> Iterator[Requested]:
    def table(name: str, index: str | None = None) -> str:
        return f"{prefix}:table/{name}" + (f"/index/{index}" if index else "")

    if action in ("TransactWriteItems", "TransactGetItems"):
        for item in body.get("TransactItems", []):
            ((kind, spec),) = item.items()
            yield Requested(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(spec["TableName"]), {})
    elif action in ("BatchWriteItem", "BatchGetItem"):
        for name in body.get("RequestItems", {}):
            yield Requested(f"dynamodb:{action}", table(name), {})
    else:
        yield Requested(
            f"dynamodb:{action}", table(body.get("TableName", "*"), body.get("IndexName")), {}
        )


def _s3(response: Any, action: str, resource: str) -> Iterator[Requested]:
    query = dict(parse_qsl(urlparse(response.uri).query, keep_blank_values=True))
    if action == "DeleteObject" and "delete" in query:
        # DeleteObjects has no IAM action of its own: S3 authorizes s3:DeleteObject on
        # each key it names (moto checks the bucket). AWS answers a refused key inside a
        # 200; refusing the whole request here is stricter, never more lenient.
        for key in _multi_delete_keys(response.body):
            yield Requested("s3:DeleteObject", f"{resource}/{key}", {})
        return
    # moto names a HEAD of a version GetObject; IAM wants GetObjectVersion.
    if action == "GetObject" and "versionId" in query:
        action = "GetObjectVersion"
    context = {"s3:prefix": query["prefix"]} if action == "ListBucket" and "prefix" in query else {}
    yield Requested(f"s3:{action}", resource, context)


def _multi_delete_keys(body: bytes | str | None) -> list[str]:
    """The keys a ``DeleteObjects`` body names (``<Delete><Object><Key>``)."""
    if not body:
        return []
    root = ElementTree.fromstring(body)
    return [
        element.text or ""
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "Key" and element.text is not None
    ]


def _secret_arn(secret_id: str, region: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    from moto.secretsmanager.models import secretsmanager_backends

    secrets = secretsmanager_backends[ACCOUNT][region].secrets
    return str(secrets[secret_id].arn) if secret_id in secrets else secret_id


def _json_body(response: Any) -> dict[str, Any]:
    raw = getattr(response, "raw_body", None) or getattr(response, "body", None) or b"{}"
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _document(policy: Any) -> dict[str, Any]:
    from moto.iam.access_control import IAMPolicy

    document: dict[str, Any] = IAMPolicy(policy)._policy_json
    return document


def _deny_anonymous(self: Any) -> NoReturn:
    from moto.core.exceptions import JsonRESTError
    from moto.s3.exceptions import S3AccessDeniedError

    if _is_s3(self):
        raise S3AccessDeniedError()
    raise JsonRESTError(
        "MissingAuthenticationTokenException", "Request is missing Authentication Token"
    )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _is_s3(self: Any) -> bool:
    return getattr(self, "service_name", "") == "s3" or hasattr(self, "bucket_name")


def _deny(self: Any, service: str, principal: str, wanted: Requested) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.s3.exceptions import S3AccessDeniedError

    _log(f"iam denied principal={principal} action={wanted.action} resource={wanted.resource}")
    if service == "s3":
        raise S3AccessDeniedError()
    error = JsonRESTError(
        "AccessDeniedException",
        f"User: {principal} is not authorized to perform: {wanted.action} on resource: "
        f"{wanted.resource} because no identity-based policy allows the {wanted.action} "
        "action",
    )
    error.code = _STATUS_BY_SERVICE.get(service, 400)
    raise error


def _sign_step_functions_calls_as_the_machine_role() -> None:
    """moto's interpreter signs its service calls with fixed dummy keys; sign them as the
    state machine's role instead, as Step Functions does."""
    import boto3
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: F401
        lambda_eval_utils,  # imports boto_client_for by name: loaded before the scan below
    )
    from moto.stepfunctions.parser.asl.utils import boto_client as module

    original = module.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region=region, service=service, state_credentials=state_credentials)
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn:
            return client
        credentials = assumed(role_arn, "states")
        # The service is chosen at run time (the stubs type only literal names).
        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=region,
            endpoint_url=client.meta.endpoint_url,
            config=client.meta.config,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
        )

    for name, loaded in list(sys.modules.items()):
        if (
            name.startswith("moto.stepfunctions")
            and getattr(loaded, "boto_client_for", None) is original
        ):
            _patches.set(loaded, "boto_client_for", boto_client_for)
