"""`mirrorspec import skopeo` (`mirrorspec/skopeo/import_sync.py`): a skopeo sync file becomes a spec
that selects exactly the same tags, or the import fails in one line.

Proof against real parts: (1) a spec is rendered with `mirrorspec render skopeo`, imported
back, and both specs are resolved against a seeded registry: same artifacts; (2) a hand-written
skopeo file with unanchored regexes, `[]` and unquoted number-like tags is run by the real
skopeo (`sync --dry-run` lists what it would copy) and compared with what the imported spec
resolves to. The rest are unit cases for each key and each refusal.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from ruamel.yaml import YAML
from testbed import RegistryServer, add_tags, push_chart, push_image, start_registry

from mirrorspec.context import RunContext
from mirrorspec.errors import SpecError
from mirrorspec.resolve import resolve
from mirrorspec.skopeo.go_regex import anchored_regex
from mirrorspec.skopeo.import_sync import SkopeoFileError, convert_skopeo
from mirrorspec.skopeo.sync_yaml import skopeo_documents, to_yaml
from mirrorspec.spec import Spec, load_spec, parse_spec

CANARY = "canary-Sk0peo-pw-71c3e9"

SPEC = """\
version: 1
sources:
  - registry: {upstream}
    insecure: true
    repositories:
      - name: team/app
        tags: ["v1.*", "latest"]
      - name: team/api
        versions: ">=1.2.0 <2.0.0"
      - name: tools/cli
        tag-regex: '^v\\d+\\.0\\.0$'
      - name: charts/platform
        versions: "^1.0.0"
        helm-dependencies: true
      - name: misc/all
        all-tags: true
targets:
  - name: lab
    type: registry
    registry: {destination}
    prefix: mirror
"""


def mirrorspec(*args: str, cwd: Path | None = None, check: int = 0) -> subprocess.CompletedProcess[str]:
    return cli_runner.run(*args, cwd=cwd, check=check, never=[CANARY], timeout=120)


def resolved(spec: Spec) -> set[tuple[str, str, str, str]]:
    """What a spec selects upstream: (registry, repository, tag, digest)."""
    ctx = RunContext(spec)
    try:
        return {(a.registry, a.repository, a.tag, a.digest) for a in resolve(ctx).artifacts}
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("import-upstream")) as server:
        for tag in ("v1.0.0", "v1.1.0", "v2.0.0", "latest"):
            push_image(server, "team/app", tag, seed=tag)
        for tag in ("1.1.0", "1.2.0", "1.9.9", "2.0.0", "1.5.0-rc.1"):
            push_image(server, "team/api", tag, seed=tag)
        for tag in ("v1.0.0", "v1.0.1", "v2.0.0", "v10.0.0"):
            push_image(server, "tools/cli", tag, seed=tag)
        push_image(server, "misc/all", "a", seed="a")
        add_tags(server, "misc/all", "a", ["b", "c"])
        for version in ("18.0.1", "18.0.2", "19.0.0"):
            push_chart(server, "charts/redis", version, seed=version)
        redis = [{"name": "redis", "version": "~18.0.0", "repository": f"oci://{server.host}/charts"}]
        for version in ("1.0.0", "1.5.0", "2.0.0"):
            push_chart(server, "charts/platform", version, dependencies=redis, seed=version)
        yield server


@pytest.fixture
def original(upstream: RegistryServer, tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(upstream=upstream.host, destination="lab.example.invalid"))
    return path


def test_render_then_import_selects_the_same_tags(original: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "sync.yaml"
    rendered.write_text(mirrorspec("render", "skopeo", str(original), "--target", "lab").stdout)
    imported = tmp_path / "imported.yaml"

    proc = mirrorspec(
        "import",
        "skopeo",
        str(rendered),
        "--output",
        str(imported),
        "--target-name",
        "lab",
        "--target-registry",
        "lab.example.invalid",
        "--prefix",
        "mirror",
    )

    assert proc.stdout == ""
    assert f"wrote {imported}" in proc.stderr
    mirrorspec("validate", str(imported))
    want = resolved(load_spec(original))
    assert len({(r, repo) for r, repo, _, _ in want}) == 6  # charts/redis came in as a dependency
    assert resolved(load_spec(imported)) == want
    # Same destinations too: the placeholder target was given the original's registry/prefix.
    assert load_spec(imported).targets == load_spec(original).targets


def test_semver_documents_import_as_versions(original: Path) -> None:
    spec = load_spec(original)
    ctx = RunContext(spec)
    try:
        artifacts = resolve(ctx).artifacts
        text = to_yaml(
            skopeo_documents(
                ctx, spec.target("lab"), artifacts, endpoint_host="lab.example.invalid", semver_capable=True
            )
        )
    finally:
        ctx.close()
    assert "images-by-semver" in text  # as skopeo >= 1.15 would be given it

    converted = convert_skopeo(text, filename="sync.yaml", target_registry="lab.example.invalid")

    imported = parse_spec(converted.text)
    repos = {r.name: r for s in imported.sources for r in s.repositories}
    assert repos["team/api"].versions == ">=1.2.0 <2.0.0"
    assert repos["charts/platform"].versions == "^1.0.0"
    assert resolved(imported) == resolved(spec)


# --- skopeo itself is the oracle ----------------------------------------------------------------

ORACLE_TAGS = (
    "1.1",
    "1.10",
    "1.13.1-alpine-perl",
    "3.18-alpine",
    "ALPINE-edge",
    "v2.0.0",
    "latest",
    "2024-01-01",
    "10",
    "perl",
)

ORACLE = """\
{host}:
  tls-verify: false
  images:
    oracle/listed:
      - 1.10
      - 2024-01-01
      - 10
      - latest
    oracle/every: []
  images-by-tag-regex:
    oracle/substring: alpine
    oracle/prefix: ^1\\.1
    oracle/suffix: 0$
    oracle/caseless: (?i)ALPINE
    oracle/alternation: perl|^v
    oracle/posix: '^[[:digit:]]+\\z'
"""


@pytest.fixture(scope="module")
def oracle_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("oracle")) as server:
        for repo in ("listed", "every", "substring", "prefix", "suffix", "caseless", "alternation", "posix"):
            push_image(server, f"oracle/{repo}", ORACLE_TAGS[0], seed=repo)
            add_tags(server, f"oracle/{repo}", ORACLE_TAGS[0], ORACLE_TAGS[1:])
        yield server


def skopeo_would_copy(config: Path) -> set[tuple[str, str]]:
    """(repository, tag) that `skopeo sync --dry-run` lists for a sync file."""
    proc = subprocess.run(
        ["skopeo", "sync", "--dry-run", "--src", "yaml", "--dest", "docker", str(config), "127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "level=error" not in proc.stderr, proc.stderr  # skopeo logs errors and exits 0
    refs = re.findall(r'Would have copied image ref \d+/\d+" from="docker://[^/]+/([^"]+)"', proc.stderr)
    assert refs, proc.stderr
    return {(ref.rpartition(":")[0], ref.rpartition(":")[2]) for ref in refs}


def test_imported_spec_selects_what_skopeo_syncs(oracle_registry: RegistryServer, tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text(ORACLE.format(host=oracle_registry.host))
    expected = skopeo_would_copy(config)

    converted = convert_skopeo(config.read_text(), filename=str(config))

    got = {(repo, tag) for _, repo, tag, _ in resolved(parse_spec(converted.text))}
    assert got == expected
    # The cases that make this test worth running: unanchored regexes and number-like tags.
    assert ("oracle/substring", "1.13.1-alpine-perl") in got
    assert ("oracle/prefix", "1.10") in got and ("oracle/suffix", "10") in got
    assert ("oracle/caseless", "3.18-alpine") in got
    assert {t for r, t in got if r == "oracle/listed"} == {"1.10", "2024-01-01", "10", "latest"}
    assert {t for r, t in got if r == "oracle/posix"} == {"10"}


# --- each key ----------------------------------------------------------------------------------


def convert(text: str, **options: Any) -> tuple[dict[str, Any], tuple[str, ...], str]:
    converted = convert_skopeo(textwrap.dedent(text), filename="sync.yaml", **options)
    assert CANARY not in converted.text + "".join(converted.messages)
    parse_spec(converted.text)  # every conversion is a valid spec
    document: dict[str, Any] = YAML(typ="safe").load(converted.text)
    return document, converted.messages, converted.text


def repositories(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for s in document["sources"] for r in s["repositories"]}


def test_images_become_tags_and_empty_lists_all_tags() -> None:
    document, _, _ = convert(
        """\
        r.example.com:
          images:
            busybox: []
            nil:
            redis: ["1.0", 1.10, "7.2.4"]
        """
    )

    repos = repositories(document)
    assert repos["busybox"] == {"name": "busybox", "all-tags": True}
    assert repos["nil"] == {"name": "nil", "all-tags": True}  # Go reads a nil list as empty
    assert repos["redis"] == {"name": "redis", "tags": ["1.0", "1.10", "7.2.4"]}


def test_tag_regex_is_anchored_with_the_same_meaning() -> None:
    document, messages, text = convert(
        """\
        r.example.com:
          images-by-tag-regex:
            nginx: ^1\\.13\\.[12]-alpine-perl$
            alpine: alpine
        """
    )

    repos = repositories(document)
    assert repos["nginx"]["tag-regex"] == r"^1\.13\.[12]-alpine-perl$"  # already anchored: as written
    assert repos["alpine"]["tag-regex"] == ".*alpine.*"
    assert any("'alpine' matches anywhere in a tag" in m for m in messages)
    assert "# skopeo regex 'alpine' matches anywhere in a tag" in text


@pytest.mark.parametrize(
    ("go", "python", "matches", "misses"),
    [
        ("alpine", ".*alpine.*", ["3.18-alpine", "alpine"], ["3.18"]),
        ("^v1", "^v1.*", ["v1", "v1.2"], ["xv1"]),
        ("-rc$", ".*-rc$", ["1.0-rc"], ["1.0-rc.1"]),
        ("^1$", "^1$", ["1"], ["10"]),
        ("a|^b", ".*(?:a|^b).*", ["xa", "bx"], ["xb"]),
        ("(?i)RC", "(?i:.*RC.*)", ["1.0-rc1"], ["1.0"]),
        ("(?U)a+", ".*a+.*", ["baa"], ["b"]),
        (r"\d\z", r".*\d\Z", ["v1"], ["1a"]),
        ("^[[:digit:]]+$", "^[0-9]+$", ["10"], ["1.0"]),
        ("[^[:alpha:]]$", ".*[^A-Za-z]$", ["a1"], ["1a"]),
        (r"x\$", r".*x\$.*", ["x$"], ["x"]),
        ("[]a]b", ".*[]a]b.*", ["]b", "ab"], ["b"]),
        ("^[[&|~]", r"^[\[\&\|\~].*", ["[", "&x", "|", "~"], ["a"]),
    ],
)
def test_anchored_regex(go: str, python: str, matches: list[str], misses: list[str]) -> None:
    assert anchored_regex(go) == python
    assert all(re.fullmatch(python, tag) for tag in matches)
    assert not any(re.fullmatch(python, tag) for tag in misses)


@pytest.mark.parametrize(
    ("go", "reason"),
    [
        (r"\p{L}", r"Go's \p cannot be converted"),
        (r"\Qa.b\E", r"Go's \Q cannot be converted"),
        ("(?=a)", "'(?=' is not valid in Go"),
        ("(?<!a)b", "'(?<!' is not valid in Go"),
        (r"(a)\1", r"\1 (octal in Go, a backreference in Python) cannot be converted"),
        ("a++", "a possessive quantifier is not valid in Go"),
        ("a{,3}", "'{,' (a literal in Go, a repetition in Python) cannot be converted"),
        ("[[:^alpha:]]", "the class [:^alpha:] cannot be converted"),
        ("a(?i)b", "the flags (?i) in the middle of a regex cannot be converted"),
        ("(a|(?i)b)", "the flags (?i) in the middle of a regex cannot be converted"),
        ("(?x)a", "flags ((?x)) are not Go regexp flags"),
    ],
)
def test_regex_syntax_that_would_change_meaning_is_refused(go: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        anchored_regex(go)


def test_semver_becomes_versions() -> None:
    document, _, _ = convert(
        """\
        r.example.com:
          images-by-semver:
            alpine: ">= 3.12.0"
        """
    )
    assert repositories(document)["alpine"] == {"name": "alpine", "versions": ">= 3.12.0"}


def test_credentials_become_env_references_and_the_password_goes_nowhere() -> None:
    document, messages, text = convert(
        f"""\
        r.example.com:5000:
          images:
            app: [v1]
          credentials:
            username: john
            password: {CANARY}
        """
    )

    assert document["credentials"] == {
        "r-example-com-5000": {
            "username": {"env": "R_EXAMPLE_COM_5000_USERNAME"},
            "password": {"env": "R_EXAMPLE_COM_5000_PASSWORD"},
        }
    }
    assert document["sources"][0]["credentials"] == "r-example-com-5000"
    assert "john" not in text
    assert any("set R_EXAMPLE_COM_5000_USERNAME and R_EXAMPLE_COM_5000_PASSWORD" in m for m in messages)


def test_a_host_that_starts_with_a_digit_gets_valid_variable_names() -> None:
    document, _, _ = convert(
        f"""\
        127.0.0.1:5000:
          images: {{app: [v1]}}
          credentials: {{username: u, password: {CANARY}}}
        """
    )
    assert document["credentials"]["127-0-0-1-5000"]["password"] == {
        "env": "REGISTRY_127_0_0_1_5000_PASSWORD"
    }


@pytest.mark.parametrize(
    "credentials",
    [
        f"{{username: u, password: {CANARY}, identitytoken: t}}",
        f"{{username: u, secret: {CANARY}}}",
        CANARY,
        f"[{CANARY}]",
        "{username: u}",
        "{username: u, password: ''}",
    ],
)
def test_bad_credentials_are_refused_without_echoing_them(credentials: str) -> None:
    with pytest.raises(SkopeoFileError) as error:
        convert(f"r.example.com:\n  images: {{app: [v1]}}\n  credentials: {credentials}\n")

    assert CANARY not in str(error.value)
    assert str(error.value).startswith("sync.yaml:3:")


def test_tls_verify_and_cert_dir() -> None:
    document, messages, text = convert(
        """\
        insecure.example.com:
          tls-verify: false
          images: {app: [v1]}
        private.example.com:
          tls-verify: true
          cert-dir: /etc/containers/certs.d/private
          images: {app: [v1]}
        """
    )

    insecure, private = document["sources"]
    assert insecure["insecure"] is True
    assert "insecure" not in private and "ca-bundle" not in private
    assert "# skopeo cert-dir /etc/containers/certs.d/private was not converted" in text
    assert any("set ca-bundle: to the CA file (PEM) in it" in m for m in messages)


def test_a_registry_key_with_a_path_and_docker_hub_aliases() -> None:
    document, _, _ = convert(
        """\
        quay.io/coreos:
          images: {etcd: [latest]}
        index.docker.io:
          images: {redis: ["7.2"]}
        docker.io:
          images: {library/nginx: ["1.25"]}
        """
    )

    quay, hub = document["sources"]
    assert quay == {"registry": "quay.io", "repositories": [{"name": "coreos/etcd", "tags": ["latest"]}]}
    assert hub["registry"] == "docker.io"
    assert [r["name"] for r in hub["repositories"]] == ["redis", "library/nginx"]


def test_several_documents_and_keys_are_merged_as_a_union() -> None:
    document, messages, _ = convert(
        """\
        r.example.com:
          images: {app: ["1.0"], api: ["2.0"]}
          images-by-tag-regex: {app: rc}
        ---
        r.example.com:
          images: {app: ["1.1"], api: []}
        """
    )

    repos = repositories(document)
    assert repos["app"]["tag-regex"] == r"(?:1\.0)|(?:1\.1)|(?:.*rc.*)"
    assert repos["api"] == {"name": "api", "all-tags": True}
    assert any("with the listed tags" in m for m in messages)
    assert any("[] takes every tag" in m for m in messages)


def test_target_options() -> None:
    document, messages, text = convert("r.io:\n  images: {app: [v1]}\n")
    assert document["targets"] == [
        {"name": "mirror", "type": "registry", "registry": "registry.example.invalid"}
    ]
    assert "# placeholder: set the registry you mirror into" in text
    assert any("placeholder" in m for m in messages)

    document, messages, text = convert(
        "r.io:\n  images: {app: [v1]}\n",
        target_name="lab",
        target_registry="registry.internal:5000",
        prefix="vendor",
    )
    assert document["targets"] == [
        {"name": "lab", "type": "registry", "registry": "registry.internal:5000", "prefix": "vendor"}
    ]
    assert "placeholder" not in text and not any("placeholder" in m for m in messages)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target_name": "Lab"}, "--target-name 'Lab': "),
        ({"target_registry": "https://x"}, "--target-registry 'https://x': "),
        ({"prefix": "/Vendor"}, "--prefix '/Vendor': "),
    ],
)
def test_bad_target_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        convert("r.io:\n  images: {app: [v1]}\n", **options)


# --- refusals: one line, with the position in the skopeo file -------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "r.io:\n  images:\n    redis:\n      - '1.0'\n      - 'sha256:" + "0" * 64 + "'\n",
            "sync.yaml:5:9: r.io › images › redis: 'sha256:"
            + "0" * 64
            + "' is a digest; spec v1 selects tags only (no digest selector): "
            "replace it with the tag it was published under, or remove it",
            id="digest",
        ),
        pytest.param(
            "r.io:\n  images-by-semvar:\n    redis: '>=1'\n",
            "sync.yaml:2:3: r.io: unknown key 'images-by-semvar' (expected one of: images, "
            "images-by-tag-regex, images-by-semver, credentials, tls-verify, cert-dir); "
            "skopeo would silently ignore it",
            id="unknown-key",
        ),
        pytest.param(
            "r.io:\n  images: {redis: [a]}\n  images-by-semver: {redis: '>=1'}\n",
            "sync.yaml:2:12: r.io/redis: selected by images-by-semver and by images or "
            "images-by-tag-regex; a spec repository takes one selector",
            id="semver-and-tags",
        ),
        pytest.param(
            "r.io:\n  images-by-tag-regex: {redis: '(?=a)'}\n",
            "sync.yaml:2:32: r.io › images-by-tag-regex › redis: regex '(?=a)': '(?=' is not valid in Go",
            id="python-only-regex",
        ),
        pytest.param(
            "r.io:\n  images-by-semver: {redis: '>= banana'}\n",
            "sync.yaml:2:29: r.io › images-by-semver › redis: invalid version constraint '>= banana'",
            id="bad-semver",
        ),
        pytest.param("r.io:\n  images: {redis: ['a b']}\n", "'a b' is not a valid tag", id="bad-tag"),
        pytest.param("r.io:\n  images: {redis: [true]}\n", "expected a tag string", id="non-string-tag"),
        pytest.param(
            "r.io:\n  images: {Redis: [a]}\n", "r.io/Redis: 'Redis' is not a valid repository", id="repo"
        ),
        pytest.param(
            "r.io:\n  images: [a]\n", "sync.yaml:2:11: r.io › images: expected a mapping", id="images"
        ),
        pytest.param("r.io:\n  tls-verify: 'no'\n", "r.io › tls-verify: expected true or false", id="tls"),
        pytest.param(
            "https://r.io:\n  images: {a: [b]}\n", "'https://r.io' is not a registry host", id="url"
        ),
        pytest.param("- r.io\n", "sync.yaml:1:1: a skopeo sync file is a mapping", id="not-a-mapping"),
        pytest.param("r.io: [\n", "sync.yaml:2:1: invalid YAML", id="invalid-yaml"),
        pytest.param("", "sync.yaml: no registries: nothing to import", id="empty"),
        pytest.param("r.io:\n  tls-verify: false\n", "no images to sync in any registry", id="no-images"),
        pytest.param(
            "r.io:\n  tls-verify: false\n  images: {a: [b]}\n---\nr.io:\n  tls-verify: true\n",
            "sync.yaml:6:15: r.io › tls-verify: differs from an earlier block for this host",
            id="conflict",
        ),
    ],
)
def test_what_cannot_be_imported_exactly_is_refused(text: str, message: str) -> None:
    with pytest.raises(SkopeoFileError) as error:
        convert_skopeo(text, filename="sync.yaml")

    assert str(error.value).startswith(message) or message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


# --- the command ------------------------------------------------------------------------------


def test_cli_prints_the_spec_and_refuses_to_overwrite(tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text(
        f"r.example.com:\n  images: {{app: [v1]}}\n  credentials: {{username: u, password: {CANARY}}}\n"
    )

    printed = mirrorspec("import", "skopeo", str(config), cwd=tmp_path)
    assert printed.stdout.startswith("# Converted from sync.yaml by `mirrorspec import skopeo`.")
    assert "set R_EXAMPLE_COM_USERNAME and R_EXAMPLE_COM_PASSWORD" in printed.stderr

    out = tmp_path / "spec.yaml"
    out.write_text("mine\n")
    refused = mirrorspec("import", "skopeo", str(config), "-o", str(out), check=1)
    assert refused.stderr == f"error: {out} exists; pass --force to overwrite it\n"
    assert out.read_text() == "mine\n"

    mirrorspec("import", "skopeo", str(config), "-o", str(out), "--force")
    assert out.read_text() == printed.stdout
    mirrorspec("validate", str(out))


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text("r.io:\n  images:\n    redis: ['sha256:" + "1" * 64 + "']\n")

    proc = mirrorspec("import", "skopeo", str(config), check=1)

    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {config}:3:13: r.io › images › redis: 'sha256:")
