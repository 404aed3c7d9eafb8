"""The Harbor emulator speaks the real contract and reproduces Harbor's documented behaviour.

Contract: `shared/harbor/swagger.yaml` (Harbor v2.15.2); behaviour: research/harbor.md. Everything
here goes over HTTPS to the emulator with plain `requests`, as any client would; executions copy
with skopeo between real `docker-registry` servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import bcrypt
import pytest
import requests
from emulators import harbor as harbor_emulator
from emulators.harbor import HarborEmulator, doublestar_match, is_specific_path
from emulators.swagger_contract import load_contract
from testbed import RegistryServer, push_image, request_log

CONTRACT = load_contract(harbor_emulator.SWAGGER_PATH)


@dataclass
class Bed:
    emu: HarborEmulator
    upstream: RegistryServer  # reachable from "Harbor" as upstream.example.com
    private: RegistryServer  # reachable as private.example.com, login required
    backing: RegistryServer  # Harbor's own storage


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer]) -> Iterator[Bed]:
    upstream = registry_factory()
    private = registry_factory(users={"bot": "bot-secret-77"})
    backing = registry_factory()
    upstreams = {"upstream.example.com": upstream, "private.example.com": private, "hub.docker.com": upstream}
    with HarborEmulator(backing, upstreams=upstreams) as emu:
        yield Bed(emu, upstream, private, backing)


def registry_body(
    name: str = "up", url: str = "https://upstream.example.com", **extra: Any
) -> dict[str, Any]:
    return {"name": name, "type": "docker-registry", "url": url, "insecure": False, **extra}


def create(emu: HarborEmulator, path: str, body: dict[str, Any]) -> int:
    response = emu.api("POST", path, json_body=body)
    assert response.status_code == 201, response.text
    return int(response.headers["Location"].rsplit("/", 1)[1])


def policy_body(registry_id: int, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "pull-app",
        "src_registry": {"id": registry_id},
        "dest_namespace": "mirror",
        "dest_namespace_replace_count": 0,
        "filters": [{"type": "name", "value": "team/app"}, {"type": "tag", "value": "{1.0,1.2}"}],
        "trigger": {"type": "manual"},
        "enabled": True,
        "override": True,
        "deletion": False,
        "replicate_deletion": False,
    }
    body.update(extra)
    return body


def run(emu: HarborEmulator, policy_id: int) -> dict[str, Any]:
    execution_id = create(emu, "/replication/executions", {"policy_id": policy_id})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        execution: dict[str, Any] = emu.api("GET", f"/replication/executions/{execution_id}").json()
        if execution["status"] != "InProgress":
            return execution
        time.sleep(0.1)
    raise AssertionError("execution did not end")


def backing_tags(bed: Bed, repository: str) -> list[str]:
    response = requests.get(f"{bed.backing.url}/v2/{repository}/tags/list", timeout=10)
    return sorted(response.json().get("tags") or []) if response.status_code == 200 else []


# --- the contract ----------------------------------------------------------------------------


def test_a_malformed_request_is_rejected_with_harbors_422_and_recorded(bed: Bed) -> None:
    wrong_type = bed.emu.api(
        "POST", "/registries", json_body={"name": 5, "url": "https://x", "type": "harbor"}
    )
    typo = bed.emu.api("POST", "/registries", json_body={**registry_body(), "insecur": True})
    too_big = bed.emu.api("GET", "/registries", params={"page_size": 500})

    for response in (wrong_type, typo, too_big):
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert error["code"] == "UNPROCESSABLE_ENTITY"
        assert error["message"].startswith("validation failure list:\n")
    assert "registry.name: 5 is not of type 'string'" in wrong_type.json()["errors"][0]["message"]
    assert "'insecur' was unexpected" in typo.json()["errors"][0]["message"]
    assert "page_size in query should be less than or equal to 100" in too_big.json()["errors"][0]["message"]
    assert len(bed.emu.take_violations()) == 3
    assert bed.emu.api("GET", "/registries").json() == []  # nothing was created


def test_a_response_that_breaks_the_contract_is_caught() -> None:
    op = CONTRACT.by_id("getRegistry")
    assert (
        CONTRACT.validate_response(op, status=200, headers={"Content-Type": "application/json"}, body=b"{}")
        == []
    )
    assert CONTRACT.validate_response(
        op, status=200, headers={"Content-Type": "application/json"}, body=b'{"id": "7", "status": 1}'
    ) == ["response.id: '7' is not of type 'integer'", "response.status: 1 is not of type 'string'"]
    assert CONTRACT.validate_response(op, status=409, headers={}, body=b"") == [
        "status 409 is not declared for getRegistry"
    ]


def test_create_answers_201_with_the_id_only_in_location(bed: Bed) -> None:
    response = bed.emu.api("POST", "/registries", json_body=registry_body())
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["Location"] == "/api/v2.0/registries/1"
    assert response.headers["X-Request-Id"]


def test_x_request_id_is_echoed(bed: Bed) -> None:
    response = bed.emu.api("GET", "/registries", headers={"X-Request-Id": "trace-me-42"})
    assert response.headers["X-Request-Id"] == "trace-me-42"


def test_registry_health_check_on_create_and_update(bed: Bed) -> None:
    unreachable = bed.emu.api(
        "POST", "/registries", json_body=registry_body(url="https://nowhere.example.com")
    )
    assert unreachable.status_code == 400
    assert unreachable.json()["errors"] == [{"code": "BAD_REQUEST", "message": "the registry is unhealthy"}]
    wrong_login = registry_body(
        url="https://private.example.com",
        credential={"type": "basic", "access_key": "bot", "access_secret": "nope"},
    )
    assert bed.emu.api("POST", "/registries", json_body=wrong_login).status_code == 400
    ident = create(bed.emu, "/registries", registry_body())
    moved = bed.emu.api("PUT", f"/registries/{ident}", json_body={"url": "https://nowhere.example.com"})
    assert moved.status_code == 400
    assert bed.emu.api("GET", f"/registries/{ident}").json()["url"] == "https://upstream.example.com"
    assert bed.emu.api("POST", "/registries", json_body=registry_body()).status_code == 409


def test_secrets_are_masked_on_read_and_partial_update_keeps_them(bed: Bed) -> None:
    credential = {"type": "basic", "access_key": "bot", "access_secret": "bot-secret-77"}
    ident = create(
        bed.emu, "/registries", registry_body(url="https://private.example.com", credential=credential)
    )
    read = bed.emu.api("GET", f"/registries/{ident}").json()
    assert read["credential"] == {"type": "basic", "access_key": "bot", "access_secret": "*****"}
    assert "bot-secret-77" not in bed.emu.api("GET", "/registries").text
    assert bed.emu.api("PUT", f"/registries/{ident}", json_body={"description": "d"}).status_code == 200
    assert bed.emu.stored_secret("up") == "bot-secret-77"  # nil fields are left alone
    assert bed.emu.api("GET", f"/registries/{ident}").json()["description"] == "d"


def test_deleting_a_registry_in_use_is_412(bed: Bed) -> None:
    registry_id = create(bed.emu, "/registries", registry_body())
    policy_id = create(bed.emu, "/replication/policies", policy_body(registry_id))
    in_use = bed.emu.api("DELETE", f"/registries/{registry_id}")
    assert in_use.status_code == 412
    assert in_use.json()["errors"][0]["code"] == "PRECONDITION"
    assert bed.emu.api("DELETE", f"/replication/policies/{policy_id}").status_code == 200
    create(bed.emu, "/projects", {"project_name": "hub-cache", "registry_id": registry_id})
    assert bed.emu.api("DELETE", f"/registries/{registry_id}").status_code == 412
    assert bed.emu.api("DELETE", "/projects/hub-cache").status_code == 200
    assert bed.emu.api("DELETE", f"/registries/{registry_id}").status_code == 200


def test_put_replaces_the_whole_policy(bed: Bed) -> None:
    registry_id = create(bed.emu, "/registries", registry_body())
    policy_id = create(bed.emu, "/replication/policies", policy_body(registry_id, deletion=True))
    before = bed.emu.api("GET", f"/replication/policies/{policy_id}").json()
    assert (before["enabled"], before["dest_namespace_replace_count"], before["deletion"]) == (True, 0, True)
    assert before["replicate_deletion"] is True
    assert before["src_registry"]["name"] == "up"
    assert before["dest_registry"]["id"] == 0  # the local Harbor

    # Only a new description: everything left out falls back to its zero value.
    partial = {"name": "pull-app", "src_registry": {"id": registry_id}, "description": "new"}
    assert bed.emu.api("PUT", f"/replication/policies/{policy_id}", json_body=partial).status_code == 200
    after = bed.emu.api("GET", f"/replication/policies/{policy_id}").json()
    assert after["description"] == "new"
    assert after["enabled"] is False
    assert after["dest_namespace_replace_count"] == -1  # flatten
    assert after["filters"] == []
    assert after["deletion"] is False

    # replicate_deletion is ignored on write; deletion is what Harbor stores.
    only_new_field = policy_body(registry_id, replicate_deletion=True)
    bed.emu.api("PUT", f"/replication/policies/{policy_id}", json_body=only_new_field)
    stored = bed.emu.api("GET", f"/replication/policies/{policy_id}").json()
    assert (stored["deletion"], stored["replicate_deletion"]) == (False, False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"src_registry": None}, "either src_registry or dest_registry should be empty"),
        ({"dest_registry": {"id": 1}}, "either src_registry or dest_registry should be empty"),
        ({"src_registry": {"id": 99}}, "registry 99 not found"),
        ({"filters": [{"type": "name", "value": "a", "decoration": "matches"}]}, "only tag and label filter"),
        ({"filters": [{"type": "size", "value": "1"}]}, "invalid filter type"),
        ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 */6 * * *"}}}, "exactly 6 fields"),
        ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "30 0 2 * * *"}}}, "Seconds of time"),
        ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 * 2 * * *"}}}, "Minutes field"),
        ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 0 25 * * *"}}}, "out of range"),
        ({"dest_namespace": "Mirror/x"}, "invalid destination namespace"),
    ],
)
def test_policy_validation(bed: Bed, change: dict[str, Any], message: str) -> None:
    registry_id = create(bed.emu, "/registries", registry_body())
    body = {k: v for k, v in policy_body(registry_id, **change).items() if v is not None}
    response = bed.emu.api("POST", "/replication/policies", json_body=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]["message"]


def test_lists_page_with_total_count_and_link(bed: Bed) -> None:
    for i in range(12):
        create(bed.emu, "/registries", registry_body(name=f"up-{i:02d}"))
    first = bed.emu.api("GET", "/registries")  # Harbor's default page_size is 10
    assert len(first.json()) == 10
    assert first.headers["X-Total-Count"] == "12"
    assert first.headers["Link"] == '</api/v2.0/registries?page=2&page_size=10>; rel="next"'
    second = bed.emu.api("GET", "/registries", params={"page": 2, "q": "name=~up-"})
    assert [r["name"] for r in second.json()] == ["up-10", "up-11"]
    assert second.headers["Link"] == '</api/v2.0/registries?page=1&page_size=10&q=name=~up->; rel="prev"'
    exact = bed.emu.api("GET", "/registries", params={"q": "name=up-03"}).json()
    assert [r["name"] for r in exact] == ["up-03"]


def test_csrf_is_enforced_only_for_a_client_that_sends_the_session_cookie(bed: Bed) -> None:
    with requests.Session() as session:  # keeps cookies, like a browser or a careless client
        session.trust_env = False
        session.auth = ("admin", bed.emu.users["admin"])
        session.verify = str(bed.emu.ca_file)
        read = session.get(f"{bed.emu.url}/api/v2.0/registries")
        assert read.status_code == 200 and "sid" in session.cookies
        write = session.post(f"{bed.emu.url}/api/v2.0/registries", json=registry_body())
        assert write.status_code == 403
        assert write.json()["errors"] == [{"code": "FORBIDDEN", "message": "CSRF token invalid"}]
    assert bed.emu.api("POST", "/registries", json_body=registry_body()).status_code == 201


def test_authentication(bed: Bed) -> None:
    anonymous = requests.get(f"{bed.emu.url}/api/v2.0/registries", verify=str(bed.emu.ca_file), timeout=10)
    assert anonymous.status_code == 401
    wrong = requests.get(
        f"{bed.emu.url}/api/v2.0/registries", auth=("admin", "nope"), verify=str(bed.emu.ca_file), timeout=10
    )
    assert wrong.status_code == 401
    ping = requests.get(f"{bed.emu.url}/api/v2.0/ping", verify=str(bed.emu.ca_file), timeout=10)
    assert (ping.status_code, ping.text) == (200, "Pong")


def test_proxy_cache_projects(bed: Bed) -> None:
    registry_id = create(bed.emu, "/registries", registry_body())
    response = bed.emu.api(
        "POST",
        "/projects",
        json_body={"project_name": "hub", "registry_id": registry_id},
        headers={"X-Resource-Name-In-Location": "true"},
    )
    assert response.headers["Location"] == "/api/v2.0/projects/hub"
    project = bed.emu.api("GET", "/projects/hub", headers={"X-Is-Resource-Name": "true"}).json()
    assert project["registry_id"] == registry_id
    assert project["metadata"]["retention_id"]  # the default "pulled within 7 days" policy
    quay = create(bed.emu, "/registries", {**registry_body(name="q"), "type": "quay"})
    refused = bed.emu.api("POST", "/projects", json_body={"project_name": "q-cache", "registry_id": quay})
    assert refused.status_code == 400
    assert bed.emu.api("POST", "/projects", json_body={"project_name": "Bad_Name"}).status_code == 400
    assert bed.emu.api("GET", "/projects/nope").status_code == 404  # undeclared, but what Harbor does


def test_adapters_list_is_the_whitelist(bed: Bed) -> None:
    adapters = bed.emu.api("GET", "/replication/adapters").json()
    assert "docker-registry" in adapters and "github-ghcr" in adapters
    assert "quay" not in adapters and "gitlab" not in adapters


# --- executions ------------------------------------------------------------------------------


def test_an_execution_copies_exactly_the_filtered_tags_with_skopeo(bed: Bed) -> None:
    digests = {t: push_image(bed.upstream, "team/app", t) for t in ("1.0", "1.1", "1.2")}
    push_image(bed.upstream, "team/other", "1.0")
    registry_id = create(bed.emu, "/registries", registry_body())
    policy_id = create(bed.emu, "/replication/policies", policy_body(registry_id))

    execution = run(bed.emu, policy_id)

    assert (execution["status"], execution["total"], execution["succeed"], execution["failed"]) == (
        "Succeed",
        1,
        1,
        0,
    )
    assert backing_tags(bed, "mirror/team/app") == ["1.0", "1.2"]
    assert backing_tags(bed, "mirror/team/other") == []
    (task,) = bed.emu.api("GET", f"/replication/executions/{execution['id']}/tasks").json()
    assert task["src_resource"] == "team/app [2 item(s) in total]"
    assert task["dst_resource"] == "mirror/team/app [2 item(s) in total]"
    log = bed.emu.api("GET", f"/replication/executions/{execution['id']}/tasks/{task['id']}/log")
    assert log.headers["Content-Type"].startswith("text/plain")
    assert "copied team/app:1.2" in log.text
    # The digest is preserved, and the project was created on the way.
    head = requests.head(
        f"{bed.backing.url}/v2/mirror/team/app/manifests/1.0",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert head.headers["Docker-Content-Digest"] == digests["1.0"]
    names = [p["name"] for p in bed.emu.api("GET", "/projects").json()]
    assert "mirror" in names
    # A specific name filter never lists the catalog.
    assert not [line for line in request_log(bed.upstream) if "_catalog" in line]


def test_a_run_that_matches_nothing_still_succeeds_with_total_zero(bed: Bed) -> None:
    push_image(bed.upstream, "team/app", "2.0")
    registry_id = create(bed.emu, "/registries", registry_body())
    policy_id = create(bed.emu, "/replication/policies", policy_body(registry_id))
    execution = run(bed.emu, policy_id)
    assert (execution["status"], execution["total"]) == ("Succeed", 0)


def test_wildcard_names_read_the_catalog_and_the_default_replace_count_flattens(bed: Bed) -> None:
    push_image(bed.upstream, "team/deep/app", "1.0")
    registry_id = create(bed.emu, "/registries", registry_body())
    body = policy_body(registry_id, filters=[{"type": "name", "value": "team/**"}])
    del body["dest_namespace_replace_count"]
    policy_id = create(bed.emu, "/replication/policies", body)
    assert run(bed.emu, policy_id)["status"] == "Succeed"
    assert backing_tags(bed, "mirror/app") == ["1.0"]  # -1: namespace + last component
    assert [line for line in request_log(bed.upstream) if "_catalog" in line]


def test_an_execution_uses_the_stored_credentials_and_fails_without_them(bed: Bed) -> None:
    push_image(bed.private, "team/app", "1.0", user="bot")
    credential = {"type": "basic", "access_key": "bot", "access_secret": "bot-secret-77"}
    registry_id = create(
        bed.emu, "/registries", registry_body(url="https://private.example.com", credential=credential)
    )
    policy_id = create(bed.emu, "/replication/policies", policy_body(registry_id))
    assert run(bed.emu, policy_id)["status"] == "Succeed"
    assert backing_tags(bed, "mirror/team/app") == ["1.0"]
    # The upstream's password changes; Harbor still holds the old one.
    bed.private.users["bot"] = "rotated-secret-88"
    hashed = bcrypt.hashpw(b"rotated-secret-88", bcrypt.gensalt(rounds=4)).decode()
    (bed.private.workdir / "htpasswd").write_text(f"bot:{hashed}\n")
    push_image(bed.private, "team/app", "1.2", user="bot")
    failed = run(bed.emu, policy_id)
    assert failed["status"] == "Failed"


def test_starting_a_disabled_policy_is_412(bed: Bed) -> None:
    registry_id = create(bed.emu, "/registries", registry_body())
    policy_id = create(bed.emu, "/replication/policies", policy_body(registry_id, enabled=False))
    response = bed.emu.api("POST", "/replication/executions", json_body={"policy_id": policy_id})
    assert response.status_code == 412
    assert response.json()["errors"][0]["message"] == f"the policy {policy_id} is disabled"


def test_the_registry_api_is_served_at_the_same_host(bed: Bed) -> None:
    digest = push_image(bed.backing, "mirror/team/app", "1.0")
    anonymous = requests.get(f"{bed.emu.url}/v2/", verify=str(bed.emu.ca_file), timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    head = requests.head(
        f"{bed.emu.url}/v2/mirror/team/app/manifests/1.0",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        auth=("admin", bed.emu.users["admin"]),
        verify=str(bed.emu.ca_file),
        timeout=10,
    )
    assert head.headers["Docker-Content-Digest"] == digest


# --- doublestar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("", "anything/at/all", True),
        ("library/*", "library/redis", True),
        ("library/*", "library/a/b", False),  # * stays within a component
        ("library/**", "library/a/b", True),
        ("**/redis", "library/redis", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("har*/**/", "har", False),  # goharbor/harbor#17901
        ("v1.?.?", "v1.2.3", True),
        ("v1.?.?", "v1.22.3", False),
        ("[a-c]pp", "bpp", True),
        ("[^a-c]pp", "bpp", False),
        ("[!a-c]pp", "dpp", False),  # doublestar v1: `!` is a class member, not a negation
        ("[!a-c]pp", "!pp", True),
        ("{1.2.0,1.5.3}", "1.5.3", True),
        ("{1.2.0,1.5.3}", "1.5.30", False),
        ("{1.2.0,1.5.3}", "1.2", False),
        ("{v{1,2},3}.0", "v2.0", True),
        ("1\\*", "1*", True),
        ("1\\*", "12", False),
        ("*", "", True),  # untagged artifacts match "" (research §5)
        ("v*", "", False),
    ],
)
def test_doublestar_semantics(pattern: str, name: str, matches: bool) -> None:
    assert doublestar_match(pattern, name) is matches


def test_specific_paths_expand_one_brace_group_per_component() -> None:
    assert is_specific_path("library/redis") == ["library/redis"]
    assert is_specific_path("org/{a,b}/app") == ["org/a/app", "org/b/app"]
    assert is_specific_path("org/{a,b}{c,d}") is None
    assert is_specific_path("org/*") is None
    assert is_specific_path("") is None


# --- the filters column (issue 13, item 4) ------------------------------------------------------


def _tag_filter_of_column_length(length: int) -> str:
    """A `{1.0.0,...}` tag filter that makes policy_body()'s filters column `length` long."""
    tags = [f"1.0.{n}" for n in range(400)]
    for count in range(1, len(tags)):
        value = "{" + ",".join(tags[:count]) + "}"
        filters = [{"type": "name", "value": "team/app"}, {"type": "tag", "value": value}]
        size = len(harbor_emulator.filters_column(filters))
        if size >= length - 12:
            return value[:-1] + "," + "x" * (length - size - 1) + "}"
    raise AssertionError("unreachable")


@pytest.mark.parametrize("key", ["name", "dest_namespace"])
def test_a_name_or_namespace_longer_than_their_varchar_256_columns_is_a_500(bed: Bed, key: str) -> None:
    """Harbor's `Policy.Validate` checks neither length; PostgreSQL refuses a value over the
    column's 256 characters, and Harbor answers that as a bare 500."""
    registry_id = create(bed.emu, "/registries", registry_body())
    fits = "a" * 256 if key == "name" else "mirror/" + "a" * 249
    create(bed.emu, "/replication/policies", policy_body(registry_id, **{key: fits}))
    too_long = policy_body(registry_id, **{key: fits + "a", **({} if key == "name" else {"name": "other"})})
    response = bed.emu.api("POST", "/replication/policies", json_body=too_long)
    assert response.status_code == 500, response.text
    assert response.json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}
    assert [p[key] for p in bed.emu.policies()] == [fits]


def test_filters_longer_than_their_varchar_1024_column_are_a_500(bed: Bed) -> None:
    registry_id = create(bed.emu, "/registries", registry_body())
    fits = _tag_filter_of_column_length(1024)
    body = policy_body(
        registry_id, filters=[{"type": "name", "value": "team/app"}, {"type": "tag", "value": fits}]
    )
    assert len(harbor_emulator.filters_column(body["filters"])) == 1024
    policy_id = create(bed.emu, "/replication/policies", body)

    too_long = _tag_filter_of_column_length(1025)
    body["filters"][1]["value"] = too_long
    for method, path in (("PUT", f"/replication/policies/{policy_id}"), ("POST", "/replication/policies")):
        body["name"] = "pull-app" if method == "PUT" else "pull-app-2"
        response = bed.emu.api(method, path, json_body=body)
        assert response.status_code == 500, response.text
        # src/lib/http/error.go: a 5xx body never says why.
        assert response.json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}
    (stored,) = bed.emu.policies()
    assert stored["filters"][1]["value"] == fits
    assert harbor_emulator.filters_column([{"type": "name", "value": "a<b&c>"}]) == (
        '[{"type":"name","value":"a\\u003cb\\u0026c\\u003e"}]'
    )


# --- single active replication (issue 13, item 7) -----------------------------------------------


@pytest.mark.parametrize("single", [True, False])
def test_a_run_started_while_another_of_the_policy_runs_is_skipped_with_single_active(
    bed: Bed, single: bool
) -> None:
    push_image(bed.upstream, "team/app", "1.0")
    registry_id = create(bed.emu, "/registries", registry_body())
    policy_id = create(
        bed.emu, "/replication/policies", policy_body(registry_id, single_active_replication=single)
    )
    bed.emu.release.clear()  # the first run stays InProgress until released
    first = create(bed.emu, "/replication/executions", {"policy_id": policy_id})
    second = create(bed.emu, "/replication/executions", {"policy_id": policy_id})
    running = bed.emu.api("GET", f"/replication/executions/{first}").json()
    other = bed.emu.api("GET", f"/replication/executions/{second}").json()
    bed.emu.release.set()
    bed.emu.wait_idle()

    assert running["status"] == "InProgress"
    if single:
        assert (other["status"], other["status_text"], other["total"]) == (
            "Failed",
            harbor_emulator.SKIPPED,
            0,
        )
        assert other["end_time"]
    else:
        assert other["status"] == "InProgress"
    statuses = [
        e["status"] for e in bed.emu.api("GET", "/replication/executions", params={"sort": "id"}).json()
    ]
    assert statuses == (["Succeed", "Failed"] if single else ["Succeed", "Succeed"])
