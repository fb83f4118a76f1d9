"""clio's /v2 tokens, roles, users and datasets, and clio's names: the clients' own requests
replayed (paths, query strings, bodies and Content-Types as each client sends them), and the
fields each client reads asserted on the answers."""

import base64
import hashlib
import hmac
import json
import secrets
import time

import pytest

from tests.utils import app_functions, assert_error, load_function

ADMIN = "admin@example.com"
ALICE = "alice@example.com"
LAB = "UK Drosophila Connectomics"  # malevnc's default group: clio's group names have spaces
HIDDEN = ".clio-hidden"  # the website hides groups whose name starts with "."
MANC = "manc:v1.0"  # clio's dataset names carry versions
FOUR_HOURS = 4 * 3600


@pytest.fixture
def world(api):
    api.add_user(ADMIN, global_roles=["admin"])
    api.add_dataset(
        MANC, location="https://manc-dvid.janelia.org/api/node/abc/grayscale", tag="v1.0", uuid="abc"
    )
    api.add_user(ALICE, datasets={MANC: ["clio_write"]}, groups=[LAB, HIDDEN])


# -- what the clients do with a token ------------------------------------------------------------


def _claims(token: str) -> dict:
    """The payload, decoded as the clients decode it: without verifying (none of them can)."""
    header, payload, _ = token.split(".")
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def clients_accept(token: str) -> dict:
    """What malevnc's `clio_token` (jose::jwt_split: `email` and `exp` required; refetch below 4 h),
    clio-py's `_validate_token` (email and exp), the website's `loginGoogleUser` (iss) and
    neuroglancer's `getUserFromToken` (the `user` claim, else `email`) check."""
    claims = _claims(token)
    assert isinstance(claims.get("email"), str) and "@" in claims["email"]
    assert isinstance(claims.get("exp"), int)
    assert claims["iss"] == "flyem-clio-store"
    assert claims["exp"] - time.time() > FOUR_HOURS
    assert claims.get("user", claims["email"]) == claims["email"]
    return claims


def _mint(api, **kw):
    """POST /v2/server/token as malevnc's clio_fetch_token sends it (no body, no Content-Type,
    `?app=natverse`): the JSON string's JWT."""
    r = api.post("/v2/server/token?app=natverse", **kw)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    token = r.get_json()
    assert isinstance(token, str) and r.get_data(as_text=True) == json.dumps(token)
    assert r.get_data(as_text=True).strip('"') == token  # the 2021 clio-py's r.text.strip('"')
    return token


def test_a_token_is_a_json_string_the_clients_decode(api, world):
    token = _mint(api, user=ALICE)
    claims = clients_accept(token)
    assert claims["email"] == ALICE and claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 21 * 86400  # three weeks, as clio
    assert claims["auth_time"] == claims["iat"] and "jti" in claims and "user" not in claims
    assert _header(token)["alg"] == "RS256"  # no shared secret by default
    # The website posts to the same path; the trailing slash answers the same.
    r = api.post("/v2/server/token/", user=ALICE, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and clients_accept(r.get_json())["email"] == ALICE


def test_the_website_exchanges_a_google_token_and_then_its_own(api, world, setting):
    setting("ALLOWED_AUDIENCES", "gatehouse-test-audience")
    google = api.google_token(ALICE)
    first = _mint(api, token=google)
    # On every page load the website exchanges the stored token again (src/Settings.jsx too).
    second = _mint(api, token=first)
    assert _claims(second)["auth_time"] == _claims(first)["auth_time"]
    assert _claims(second)["jti"] != _claims(first)["jti"]


def test_every_function_accepts_the_token(api, world):
    token = _mint(api, user=ALICE)
    for name in app_functions():
        app = load_function(name).app
        checked = [r for r in app.routes if r.check is not None]
        route = next((r for r in checked if r.method == "GET"), checked[0])  # neuprint has only a POST
        path = route.path.replace("<", "").replace(">", "")  # any value: a 404 is past authentication
        r = api.call(route.method, path, token=token, **({} if route.method == "GET" else {"json": {}}))
        assert r.status_code != 401, (name, path, r.get_data(as_text=True))
    r = api.get("/roles", token=token)
    assert r.status_code == 200 and r.get_json()["datasets"] == {MANC: ["clio_write"]}
    assert api.get(f"/annotations/v2/{MANC}", token=token).status_code == 200


def test_a_token_is_listed_with_the_keys_and_revoked_like_one(api, world):
    token = _mint(api, user=ALICE)
    jti = _claims(token)["jti"]
    [listed] = api.get("/users/me/keys", token=token).get_json()
    assert listed["id"] == jti and listed["name"] == "clio token"
    from common.storage import store

    record = store.collection("api_keys").document(jti).get().to_dict()
    assert record["expire_at"].timestamp() == _claims(token)["exp"]  # the TTL policy removes it then
    # Tokens hold none of the five key slots.
    for n in range(5):
        assert api.post("/users/me/keys", user=ALICE, json={"name": f"k{n}"}).status_code == 201
    assert api.get("/datasets", token=token).status_code == 200
    assert api.delete(f"/users/me/keys/{jti}", user=ALICE).status_code == 204
    body = assert_error(api.get("/v2/datasets", token=token), 401, "unauthenticated")
    assert body["detail"] == body["message"]
    assert api.get("/roles", token=token).status_code == 401


def _chain_began(email: str, seconds_ago: int) -> str:
    """A token (recorded, as minted) whose chain began `seconds_ago`."""
    from common.identity import apikeys
    from common.storage import store
    from functions.users import tokens

    now, jti = int(time.time()), secrets.token_hex(8)
    store.collection(apikeys.COLLECTION).document(jti).set(
        {"email": email, "name": "clio token", "kind": apikeys.TOKEN_KIND, "created_at": store.now()}
    )
    claims = {"iss": "flyem-clio-store", "email": email, "email_verified": True, "iat": now}
    return tokens.sign({**claims, "exp": now + 3600, "jti": jti, "auth_time": now - seconds_ago})


def test_renewing_from_tokens_stops_at_the_chain_limit(api, world):
    limit = 90 * 86400
    near_end = _mint(api, token=_chain_began(ALICE, limit - 86400))
    assert _claims(near_end)["exp"] == _claims(near_end)["auth_time"] + limit  # capped, not 3 weeks
    clients_accept(near_end)
    # Less than the clients' 4 h left in the chain: they would refetch at once, so sign in again.
    r = api.post("/v2/server/token", token=_chain_began(ALICE, limit - FOUR_HOURS + 60))
    assert assert_error(r, 401, "unauthenticated")["detail"]
    # A fresh credential starts a new chain.
    assert _claims(_mint(api, user=ALICE))["auth_time"] >= int(time.time()) - 5


def test_hs256_with_clio_stores_secret_only_when_configured(api, world, setting):
    setting("FLYEM_SECRET", "clio-secret")
    token = _mint(api, user=ALICE)
    assert _header(token)["alg"] == "HS256"
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(b"clio-secret", signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature  # DVID's check
    clients_accept(token)
    assert api.get("/roles", token=token).status_code == 200
    # A token clio-store minted (no jti) is accepted only where the operator says so.
    from common.identity import auth

    now = int(time.time())
    legacy = auth.hs256_encode(
        {"iss": "flyem-clio-store", "email": ALICE, "email_verified": True, "iat": now, "exp": now + 3600},
        "clio-secret",
    )
    assert api.get("/roles", token=legacy).status_code == 401
    setting("ACCEPT_LEGACY_FLYEM_TOKENS", "1")
    auth._verified.clear()
    assert api.get("/roles", token=legacy).get_json()["email"] == ALICE


def test_hs256_tokens_are_refused_without_the_secret(api, world):
    from common.identity import auth

    now = int(time.time())
    claims = {
        "iss": "flyem-clio-store",
        "email": ALICE,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    forged = auth.hs256_encode({**claims, "jti": "0123456789abcdef"}, "guessed")
    assert api.get("/roles", token=forged).status_code == 401


def test_token_needs_a_credential_and_an_enabled_account(api, world):
    # neuroglancer's first request is anonymous: 401 (not 403) makes it fetch the token and retry.
    body = assert_error(api.post("/v2/server/token"), 401, "unauthenticated")
    assert body["detail"]
    api.add_user("off@example.com", disabled=True)
    assert api.post("/v2/server/token", user="off@example.com").status_code == 403


# -- roles, users, datasets as the clients call them --------------------------------------------


def test_roles_as_the_website_and_clio_py_read_them(api, world):
    r = api.get("/v2/roles?app=clio-py", user=ALICE)  # schlegelp Client.fetch_roles
    assert r.status_code == 200
    roles = r.get_json()
    # src/utils/permissions.jsx: global_roles.includes(...), datasets[ds].includes('clio_write').
    assert roles["email"] == ALICE and roles["global_roles"] == []
    assert "clio_write" in roles["datasets"][MANC]
    assert set(roles["groups"]) == {LAB, HIDDEN}
    assert {"name", "org", "picture", "disabled", "datasets_ignore_tos", "missing_tos"} <= set(roles)
    assert "admin" in api.get("/v2/roles", user=ADMIN).get_json()["global_roles"]


def test_user_admin_as_the_website_does_it(api, world):
    # src/UserAdmin.jsx: the list, then global_roles.includes('admin').
    users = api.get("/v2/users", user=ADMIN).get_json()
    assert "admin" in users[ADMIN]["global_roles"] and users[ALICE]["datasets"] == {MANC: ["clio_write"]}
    # src/Admin/NewUserForm.jsx: a JSON body without a Content-Type, the email inside again.
    new = "new@example.com"
    body = {new: {"global_roles": ["clio_general"], "email": new, "org": "lab"}}
    r = api.post("/v2/users", user=ADMIN, data=json.dumps(body))
    assert r.status_code == 200 and r.get_json() is None, r.get_data(as_text=True)
    assert api.get("/v2/users", user=ADMIN).get_json()[new]["global_roles"] == ["clio_general"]
    # The clio names travel in a grant too.
    body = {new: {"datasets": {MANC: ["clio_read"]}, "groups": [LAB]}}
    assert api.post("/v2/users", user=ADMIN, data=json.dumps(body)).status_code == 200
    assert api.get("/v2/roles", user=new).get_json()["datasets"] == {MANC: ["clio_read"]}
    # src/UserAdmin.jsx handleDelete.
    r = api.delete("/v2/users", user=ADMIN, data=json.dumps([new]))
    assert r.status_code == 200 and r.get_json() is None
    assert new not in api.get("/v2/users", user=ADMIN).get_json()
    assert api.delete("/v2/users", user=ADMIN, data=json.dumps([new])).status_code == 200  # absent: fine
    assert_error(api.get("/v2/users", user=ALICE), 403, "forbidden")


def test_datasets_as_the_clients_read_them(api, world):
    layers = [{"name": "grayscale", "source": "precomputed://gs://bucket/{tag}/{uuid}"}]
    api.add_dataset(
        "cns",
        tag="v0.9",
        uuid="f00d",
        dvid="https://emdata.example/api/node/{uuid}",
        mainLayer="grayscale",
        neuroglancer={"layers": layers},
        versions=[{"version": "{tag}"}],
        neuprintHTTP={"server": "neuprint.example", "dataset": "cns", "version": "{tag}"},
        bodyAnnotationSchema={"collection": "neurons_{tag}"},
        location="dvid://https://emdata.example/{uuid}/grayscale",
    )
    api.add_user(ALICE, datasets={MANC: ["clio_write"], "cns": ["clio_read"]}, groups=[LAB])
    r = api.get("/v2/datasets?app=natverse", user=ALICE)  # malevnc clio_datasets
    assert r.status_code == 200
    datasets = r.get_json()
    assert set(datasets) == {MANC, "cns"}
    cns = datasets["cns"]
    assert cns["tag"] == "v0.9"  # malevnc clio_version: [[ds]]$tag
    assert cns["dvid"] == "https://emdata.example/api/node/f00d"  # malevnc manc_dvid_node
    # neuroglancer's completeSourceParameters: location, or mainLayer + neuroglancer.layers[].source.
    assert cns["location"] == "dvid://https://emdata.example/f00d/grayscale"
    main = next(layer for layer in cns["neuroglancer"]["layers"] if layer["name"] == cns["mainLayer"])
    assert main["source"] == "precomputed://gs://bucket/v0.9/f00d"
    assert cns["versions"] == [{"version": "v0.9"}] and cns["neuprintHTTP"]["version"] == "v0.9"
    assert cns["bodyAnnotationSchema"]["collection"] == "neurons_v0.9"
    assert datasets[MANC]["location"].startswith("https://")
    stored = api.get("/v2/datasets?templates=true", user=ALICE).get_json()["cns"]
    assert stored["dvid"] == "https://emdata.example/api/node/{uuid}"
    assert "cns" not in api.get("/v2/datasets", user="stranger@example.com").get_json()


def test_a_user_granted_after_the_dataset_sees_it(api, world):
    api.add_dataset("later")
    api.add_user("late@example.com", datasets={"later": ["clio_general"]})
    assert set(api.get("/v2/datasets", user="late@example.com").get_json()) == {"later"}
    assert set(api.get("/datasets", user="late@example.com").get_json()) == {"later"}


# -- clio's names, wherever a name goes -----------------------------------------------------------


def test_clio_names_are_stored_and_served(api, world):
    assert api.get(f"/datasets/{MANC}", user=ALICE).get_json()["name"] == MANC
    # As a Firestore document id (annotations under it), a URL segment and a query value.
    point = {"kind": "point", "pos": [1, 2, 3], "user": ALICE, "tags": []}
    assert api.post(f"/annotations/v2/{MANC}", user=ALICE, json=point).status_code == 200
    r = api.get(f"/annotations/v2/{MANC}?groups={LAB}", user=ALICE)
    assert r.status_code == 200 and [a["pos"] for a in r.get_json()] == [[1, 2, 3]]
    # An attachment: a Cloud Storage object under the dataset.
    from io import BytesIO

    upload = {"name": "n.txt", "attachment": (BytesIO(b"hi"), "n.txt")}
    r = api.post(f"/datasets/{MANC}/attachments", user=ADMIN, data=upload, content_type="multipart/form-data")
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    assert [a["name"] for a in api.get(f"/datasets/{MANC}/attachments", user=ADMIN).get_json()] == ["n.txt"]
    # Names that are still refused: a path separator, a leading or trailing space.
    for name in ("a/b", " lab", "lab "):
        r = api.post("/users", user=ADMIN, json={"x@example.com": {"groups": [name]}})
        assert r.status_code == 422, name
    assert api.post("/datasets", user=ADMIN, json={"a b": {"description": "d"}}).status_code == 422


class _IamCredentials:
    """IAM Credentials' signBlob, signing as the signer account with `key` (google-auth's
    AuthorizedSession stands in: the same call the users function makes in the cloud)."""

    def __init__(self, key_pem: bytes):
        from google.auth import crypt

        self.signer, self.calls = crypt.RSASigner.from_string(key_pem), []

    def post(self, url, json, timeout):
        from types import SimpleNamespace

        self.calls.append(url)
        signed = self.signer.sign(base64.b64decode(json["payload"]))
        answer = {"keyId": "k", "signedBlob": base64.b64encode(signed).decode()}
        return SimpleNamespace(status_code=200, json=lambda: answer)


def test_in_the_cloud_the_signer_account_signs_and_its_certificates_verify(
    api, world, setting, keys, certs_server, monkeypatch
):
    """RS256 by the signer account through signBlob (no key id in the header), verified against
    the account's published certificates (here the test certificate server's)."""
    from common.identity import auth
    from functions.users import tokens

    iam = _IamCredentials(keys.google_key_pem)
    monkeypatch.setattr(tokens, "_session", lambda: iam)
    monkeypatch.setattr(auth, "SIGNER_CERTS_URL", certs_server.url)
    setting("CLIO_TOKEN_SIGNER", "clio-signer@project.iam.gserviceaccount.com")
    token = _mint(api, user=ALICE)
    assert iam.calls == [tokens.IAM_CREDENTIALS.format(account="clio-signer@project.iam.gserviceaccount.com")]
    assert _header(token) == {"alg": "RS256", "typ": "JWT"}
    clients_accept(token)
    assert api.get("/roles", token=token).get_json()["email"] == ALICE
    # The local issuer's key no longer signs for this deployment.
    setting("CLIO_TOKEN_SIGNER", "")
    local = _mint(api, user=ALICE)
    setting("CLIO_TOKEN_SIGNER", "clio-signer@project.iam.gserviceaccount.com")
    auth._verified.clear()
    assert api.get("/roles", token=local).status_code == 401
