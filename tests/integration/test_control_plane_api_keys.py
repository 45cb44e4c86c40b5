"""API keys: the authorizer in front of every management route, and the key routes.

Through Chalice's gateway (the same authorizer code API Gateway runs), with the
gateway responses the deployed API answers with.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Api


def _json(answer: Any) -> Any:
    return json.loads(answer.body)


def _as(cp_api: Api, key: str) -> Api:
    return Api(cp_api.client, key)


def _create(cp_api: Api, name: str, role: str | None = None) -> dict[str, Any]:
    body = {"name": name, **({"role": role} if role else {})}
    answer = cp_api.call("POST", "/keys", body)
    assert answer.status_code == 201, answer.body
    return dict(_json(answer))


def _refusal(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.body
    assert _json(answer)["error"]["code"] == code, answer.body


def test_a_created_user_key_calls_management_routes_but_not_the_key_routes(cp_api: Api) -> None:
    created = _create(cp_api, "app backend")
    assert created["role"] == "user" and created["revoked_at"] is None
    assert created["key"].startswith(f"fsk_{created['key_id']}_")
    user = _as(cp_api, created["key"])
    assert user.call("GET", "/files").status_code == 200
    assert user.call("GET", "/cluster").status_code == 200
    # The authorizer's policy for a user key leaves out /keys: API Gateway refuses it.
    _refusal(user.call("GET", "/keys"), 403, "forbidden")
    _refusal(user.call("POST", "/keys", {"name": "escalate", "role": "admin"}), 403, "forbidden")


def test_listing_shows_every_key_without_its_secret(cp_api: Api) -> None:
    created = _create(cp_api, "listed")
    listed = _json(cp_api.call("GET", "/keys?limit=1000"))
    (entry,) = [k for k in listed["keys"] if k["key_id"] == created["key_id"]]
    assert entry == {k: created[k] for k in ("key_id", "name", "role", "created_at", "revoked_at")}
    assert created["key"] not in json.dumps(listed)
    assert "secret_sha256" not in json.dumps(listed)


def test_an_admin_key_manages_keys_and_a_revoked_key_is_refused(cp_api: Api) -> None:
    admin = _as(cp_api, _create(cp_api, "second admin", "admin")["key"])
    user = _create(admin, "short-lived")
    assert _as(cp_api, user["key"]).call("GET", "/files").status_code == 200
    revoked = _json(admin.call("DELETE", f"/keys/{user['key_id']}"))
    assert revoked["revoked_at"] is not None
    # Revoking again answers the same record (the first revocation's time stays).
    assert _json(admin.call("DELETE", f"/keys/{user['key_id']}")) == revoked
    # No authorizer cache in this client: refused at once (AWS: within the cache's TTL).
    _refusal(_as(cp_api, user["key"]).call("GET", "/files"), 401, "unauthorized")


@pytest.mark.parametrize(
    "token",
    [
        "",  # "Bearer " and nothing
        "garbage",
        "fsk_" + "0" * 32 + "_" + "A" * 43,  # well formed, unknown id
        "fsk_" + "0" * 31 + "_" + "A" * 43,  # malformed id
        "x" * 5000,  # longer than any key
    ],
)
def test_a_wrong_key_is_a_401_in_the_documented_shape(cp_api: Api, token: str) -> None:
    answer = cp_api.call("GET", "/files", key=False, headers={"authorization": f"Bearer {token}"})
    _refusal(answer, 401, "unauthorized")


def test_a_right_key_id_with_a_wrong_secret_is_refused(cp_api: Api) -> None:
    created = _create(cp_api, "guessed")
    forged = created["key"][:-4] + ("AAAA" if not created["key"].endswith("AAAA") else "BBBB")
    _refusal(_as(cp_api, forged).call("GET", "/files"), 401, "unauthorized")
    # Not the bearer scheme: refused even with the right key.
    answer = cp_api.call(
        "GET", "/files", key=False, headers={"authorization": f"Basic {created['key']}"}
    )
    _refusal(answer, 401, "unauthorized")
    # No header at all: API Gateway refuses before the authorizer runs.
    _refusal(cp_api.call("GET", "/files", key=False), 401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "role": "root"}, "role"),
        ({"name": "ok", "role": 1}, "role"),
    ],
)
def test_bad_key_requests_are_400(cp_api: Api, body: dict[str, Any], field: str) -> None:
    answer = cp_api.call("POST", "/keys", body)
    _refusal(answer, 400, "invalid_input")
    assert _json(answer)["error"]["details"]["field"] == field


def test_revoking_an_unknown_or_malformed_key_id(cp_api: Api) -> None:
    _refusal(cp_api.call("DELETE", "/keys/" + "0" * 32), 404, "not_found")
    _refusal(cp_api.call("DELETE", "/keys/not-an-id"), 400, "invalid_input")
    _refusal(cp_api.call("GET", "/keys?next_token=../x"), 400, "invalid_input")
