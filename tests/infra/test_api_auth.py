"""Every route of the deployed API has the auth the app declares: the API-key authorizer,
or none on purpose (listed here with the credential the route checks itself)."""

from __future__ import annotations

from typing import Any

import pytest

from fsnode.localstack.app_loader import load_functions_app
from infra import paths

from .conftest import Synthesis

AUTHORIZER = "api_key_authorizer"
# Routes API Gateway lets through without a key, each with what guards it instead.
PUBLIC_ON_PURPOSE = {
    ("POST", "/nodes/register"): "the join token in the body and the AWS identity",
    ("POST", "/nodes/{node_id}/heartbeat"): "the node's credential (Bearer)",
    ("POST", "/nodes/{node_id}/work/{work_id}"): "the node's credential (Bearer)",
    ("POST", "/nodes/{node_id}/renew"): "the node's credential (Bearer)",
    ("GET", "/nodes/{node_id}/public-certificate"): "the node's credential (Bearer)",
    ("GET", "/s/{file_id}"): "the share URL's signature",
    ("HEAD", "/s/{file_id}"): "the share URL's signature",
    ("GET", "/t/{token}"): "the folder share's token",
    ("HEAD", "/t/{token}"): "the folder share's token",
    ("GET", "/t/{token}/{proxy+}"): "the folder share's token",
    ("HEAD", "/t/{token}/{proxy+}"): "the folder share's token",
    ("GET", "/openapi.json"): "nothing: the public contract",
    ("GET", "/"): "nothing: the upload page (its API calls send the key)",
    ("GET", "/player"): "nothing: the player page (it plays share URLs)",
    ("GET", "/web/app.js"): "nothing: a static asset",
    ("GET", "/web/player.js"): "nothing: a static asset",
    ("GET", "/web/folders.js"): "nothing: a static asset",
    ("GET", "/web/hls.min.js"): "nothing: a static asset (the pinned hls.js)",
    ("GET", "/web/dash.mediaplayer.min.js"): "nothing: a static asset (the pinned dash.js)",
    ("GET", "/web/style.css"): "nothing: a static asset",
    ("GET", "/web/config.json"): "nothing: the chunk size an uploader hashes by",
}


def _template_routes(synthesis: Synthesis) -> dict[tuple[str, str], Any]:
    body = synthesis.template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    return {
        (method.upper(), path): operation.get("security")
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
        if method.upper() != "OPTIONS"
    }


def _app_routes() -> dict[tuple[str, str], Any]:
    app = load_functions_app(paths.FUNCTIONS_DIR).app
    return {
        (method, path): entry.authorizer
        for path, methods in app.routes.items()
        for method, entry in methods.items()
    }


@pytest.fixture(scope="module")
def real_app(synthesis: Synthesis) -> Synthesis:
    assert not synthesis.uses_placeholder_functions, "the app's routes are not synthesized"
    return synthesis


def test_the_template_has_exactly_the_apps_routes_with_their_auth(real_app: Synthesis) -> None:
    template = _template_routes(real_app)
    app = _app_routes()
    assert set(template) == set(app)
    for route, authorizer in app.items():
        if authorizer is None:
            assert route in PUBLIC_ON_PURPOSE, f"{route} is open without being listed"
            assert template[route] is None, route
        else:
            assert authorizer.name == AUTHORIZER, route
            assert template[route] == [{AUTHORIZER: []}], route
            assert route not in PUBLIC_ON_PURPOSE, route


def test_the_authorizer_reads_the_key_header_and_caches_briefly(real_app: Synthesis) -> None:
    from chalicelib.routes_keys import AUTHORIZER_TTL_SECONDS  # the app's own value

    body = real_app.template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    ((name, scheme),) = body["securityDefinitions"].items()
    assert name == AUTHORIZER
    assert (scheme["in"], scheme["name"]) == ("header", "Authorization")
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "token"
    # The cache is the revocation delay (README, Deploying): short, and the app's value.
    assert authorizer["authorizerResultTtlInSeconds"] == AUTHORIZER_TTL_SECONDS <= 300
    assert "${ApiKeyAuthorizer.Arn}" in authorizer["authorizerUri"]["Fn::Sub"]


def test_a_user_key_policy_names_every_management_route_but_the_key_routes() -> None:
    from chalicelib.routes_keys import USER_ROUTES

    def covered(path: str) -> bool:
        return any(
            path == pattern or (pattern.endswith("/*") and path.startswith(pattern[:-1]))
            for pattern in USER_ROUTES
        )

    for (_, path), authorizer in _app_routes().items():
        if authorizer is not None:
            assert covered(path) != path.startswith("/keys"), path
