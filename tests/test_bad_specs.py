"""Bad input, through the installed CLI as a user runs it: always one line on stderr that says
where and what, exit 1, no traceback, nothing on stdout, nothing written — and never a hang
or a memory blow-up (each run is under a memory limit and a timeout, so a regression fails
instead of stalling the suite).

tests/test_spec.py checks positions and wording case by case in-process; this file is the
catalogue of *kinds* of bad input, each through the real console script. The kinds covered
(README-ready; `KINDS` below, plus the Helm cycle and the generated specs at the end):

Files (10): a missing file, a path through a file, a directory, a device that never ends
(/dev/zero), a symlink to it, a FIFO no one writes to, a 20 MB file, an empty file, bytes that
are not UTF-8, a UTF-16 file.
YAML (21): a NUL byte, a raw terminal escape sequence, a newline inside a key, an escaped
terminal sequence in a value, two documents, a top-level list, a top-level scalar, tab
indentation, an unterminated quoted string, a duplicate key, 100,000 nested `[`, 100,000
nested `{`, an alias bomb ("billion laughs"), a recursive alias, an undefined alias, a
`!!python/object` tag, a date Python cannot hold, `!!bool 1`, an integer of 5,000 digits,
1,000,001 values in a small file, a 500 KB repository name.
Schema (20): an unsupported version, a number where a list belongs, a list where a string
belongs, an unknown top-level key, an empty source list, a missing required key, a port
outside 1-65535, a registry host with user:password@, a Harbor url with user:password@, a
version constraint that does not parse, a regex that does not compile, a Harbor cron with
seconds other than 0, a Harbor cron with minute 61, duplicate target names, one ECR
replication region listed twice, one upstream listed twice with different credentials, a
literal password, a reference to undefined credentials, a 129-character tag, a tag glob
that only matches tags longer than 128 characters.
Referenced files (2): a missing `ca-bundle`, a `ca-bundle` that holds no PEM certificate
(tests/test_user_files.py covers every file a spec names, kind by kind).
Resolution (3): Helm charts whose dependencies form a cycle (A → B → A, and A → A), from a
real registry; a tag-regex that backtracks exponentially on a real tag.
Generated: hypothesis mutations of the example specs (values deleted, replaced, retyped,
unknown keys added, items duplicated), random text and random bytes spliced into them, and
random documents from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from ruamel.yaml import YAML
from spec_text import MINIMAL_SPEC
from testbed import RegistryServer, push_chart, push_image

from mirrorspec import cli, spec as specmod
from mirrorspec.errors import SpecError
from mirrorspec.spec import load_spec, parse_spec

MIRRORSPEC = Path(sys.executable).with_name("mirrorspec")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Generous for one CLI run (a valid spec needs ~60 MB), far below what a 10 MB spec or an
# alias bomb would take unbounded: a regression dies with MemoryError and fails the test.
MEMORY_LIMIT = 512 << 20
TIMEOUT = 60

VALID = MINIMAL_SPEC
HARBOR = """\
  - name: dc1
    type: harbor
    url: https://harbor.example.com
    project: vendor
"""
CREDENTIALS = """\
credentials:
  hub:
    username: {env: HUB_USER}
    password: {env: HUB_TOKEN}
"""


def nested(opening: str, closing: str, depth: int) -> str:
    return f"version: 1\nsources: {opening * depth}{closing * depth}\n"


def alias_bomb(levels: int = 12) -> str:
    lines = ["version: 1", "sources:", "targets:", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 5)}]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Kind:
    id: str
    content: str | bytes | None  # None: `path` makes the input itself
    expect: str  # a substring of the error line
    where: str | None  # "line:col" after the file name, or None where no position exists
    absent: str | None = None  # must not appear in the output (a secret)
    path: Callable[[Path], Path] | None = None


# Schema errors come from small documents that cannot exhaust anything: they run through
# the same CLI entry point in-process, which saves a Python start-up (~0.5 s) per kind.
IN_PROCESS = {
    "unsupported-version",
    "number-for-list",
    "list-for-string",
    "unknown-top-level-key",
    "empty-source-list",
    "missing-targets",
    "port-out-of-range",
    "host-with-credentials",
    "harbor-url-with-credentials",
    "bad-constraint",
    "bad-regex",
    "cron-seconds",
    "cron-minute-61",
    "duplicate-target-name",
    "same-upstream-other-credentials",
    "duplicate-replication-region",
    "literal-password",
    "undefined-credentials",
    "tag-of-129-characters",
    "glob-only-longer-than-128",
}


def _missing(tmp: Path) -> Path:
    return tmp / "nope.yaml"


def _through_a_file(tmp: Path) -> Path:
    (tmp / "plain-file").write_text("x", encoding="utf-8")
    return tmp / "plain-file" / "spec.yaml"


def _directory(tmp: Path) -> Path:
    (tmp / "specs.yaml").mkdir()
    return tmp / "specs.yaml"


def _dev_zero(tmp: Path) -> Path:
    return Path("/dev/zero")


def _symlink_to_dev_zero(tmp: Path) -> Path:
    (tmp / "spec.yaml").symlink_to("/dev/zero")
    return tmp / "spec.yaml"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "spec.yaml")  # nobody ever opens it for writing: a blocking open() never returns
    return tmp / "spec.yaml"


KINDS = [
    # --- the file itself ------------------------------------------------------------------
    Kind("missing-file", None, "cannot read spec: No such file or directory", None, path=_missing),
    Kind("path-through-a-file", None, "cannot read spec: Not a directory", None, path=_through_a_file),
    Kind("directory", None, "is a directory", None, path=_directory),
    Kind(
        "endless-device",
        None,
        "cannot read spec: it is a character device, not a regular",
        None,
        path=_dev_zero,
    ),
    Kind(
        "symlink-to-endless-device",
        None,
        "cannot read spec: it is a character device (through a symlink to /dev/zero), not a regular file",
        None,
        path=_symlink_to_dev_zero,
    ),
    Kind("fifo", None, "cannot read spec: it is a named pipe (FIFO), not a regular file", None, path=_fifo),
    Kind(
        "20-mb-file",
        "version: 1\n" + "# padding\n" * 2_000_000,
        "spec is 19.1 MiB, more than the limit of 16 MiB",
        None,
    ),
    Kind("empty-file", "", "the spec must be a YAML mapping, found nothing (the file is empty)", "1:1"),
    Kind("not-utf8", b"version: 1\n# caf\xe9\n", "spec is not UTF-8 text (byte 0xe9)", "2:6"),
    Kind("utf16", VALID.encode("utf-16"), "spec is not UTF-8 text (byte 0xff)", "1:1"),
    # --- YAML -----------------------------------------------------------------------------
    Kind("nul-byte", "version: 1\nsources:\x00\n", "control character U+0000 is not allowed", "2:9"),
    Kind("terminal-escape", "version: 1\nmode: \x1b[31mred\n", "control character U+001B", "2:7"),
    Kind("newline-in-key", VALID + '"col\\nour": blue\n', "unknown key 'col\\nour'", "11:1"),
    Kind(
        "escape-sequence-in-value",
        'version: 1\nmode: "\\e[2J\\e[31mred"\n',
        "mode: expected 'mirror' or 'cache'",
        "2:7",
        absent="\x1b",
    ),
    Kind("two-documents", VALID + "---\n" + VALID, "found a second document ('---')", "11:1"),
    Kind("top-level-list", "- " + VALID.replace("\n", "\n  "), "must be a YAML mapping, found a list", "1:1"),
    Kind("top-level-scalar", "mirrorspec\n", "must be a YAML mapping, found a string", "1:1"),
    Kind(
        "tab-indentation",
        VALID.replace("    type: registry", "\ttype: registry"),
        "YAML does not allow tabs",
        "9:1",
    ),
    Kind(
        "unterminated-quote", VALID.replace('["7.2.4"]', '["7.2.4]'), "found unexpected end of stream", "11:1"
    ),
    Kind(
        "duplicate-key", VALID + "    registry: other.example.com\n", 'found duplicate key "registry"', "11:5"
    ),
    Kind("nested-brackets", nested("[", "]", 100_000), "nesting deeper than 32 levels", "2:41"),
    Kind("nested-braces", nested("{a: ", "}", 100_000), "nesting deeper than 32 levels", "2:131"),
    Kind("alias-bomb", alias_bomb(), "aliases expand the document to more than 1,000,000 values", "12:10"),
    Kind(
        "recursive-alias",
        "version: 1\nsources: &s [*s]\n",
        "alias *s refers to a node that contains it",
        "2:14",
    ),
    Kind(
        "undefined-alias", VALID.replace('["7.2.4"]', "*versions"), "found undefined alias 'versions'", "6:15"
    ),
    Kind(
        "python-tag",
        "version: !!python/object/apply:os.system [id]\n",
        "YAML tag '!!python/object/apply:os.system'",
        "1:10",
    ),
    Kind(
        "impossible-date",
        VALID.replace('["7.2.4"]', "[0000-01-01]"),
        "cannot read value '0000-01-01'",
        "6:16",
    ),
    Kind("bool-tag-on-a-number", "version: !!bool 1\n", "cannot read value '1': not a valid !!bool", "1:10"),
    Kind("huge-integer", f"version: {'9' * 5000}\n", "Exceeds the limit (4300 digits)", "1:10"),
    Kind(
        "too-many-values",
        "version: 1\nsources: [" + "1, " * 1_000_001 + "]\n",
        "more than 1,000,000 values",
        "2:",
    ),
    Kind(
        "huge-value",
        VALID.replace("name: redis", "name: " + "r" * 500_000),
        "is longer than 255 characters",
        "5:15",
    ),
    # --- the schema: small documents, run in-process (the runs above prove the limits) -
    Kind("unsupported-version", 'version: "1.0"\n', "version: expected 1, found '1.0'", "1:10"),
    Kind(
        "number-for-list",
        "version: 1\nsources: 5\n" + VALID.split("\n", 6)[-1],
        "sources: expected a valid list, found 5",
        "2:10",
    ),
    Kind(
        "list-for-string", VALID.replace("name: lab", "name: [lab]"), "name: expected a valid string", "8:11"
    ),
    Kind(
        "unknown-top-level-key",
        VALID.replace("targets:", "mode: mirror\nlayuot: flat\ntargets:"),
        "unknown key 'layuot' (expected one of:",
        "8:1",
    ),
    Kind(
        "empty-source-list",
        VALID.replace("sources:\n", "sources: []\nx:\n"),
        "sources: expected at least 1 item(s)",
        "2:1",
    ),
    Kind("missing-targets", VALID.split("targets:")[0], "missing required key 'targets'", "1:1"),
    Kind(
        "port-out-of-range",
        VALID.replace("internal.example.com", "internal.example.com:99999"),
        "port 99999 is outside 1-65535",
        "10:15",
    ),
    Kind(
        "host-with-credentials",
        VALID.replace("registry: docker.io", "registry: me:Hunter2pw@docker.io"),
        "a registry host must not hold credentials",
        "3:15",
        absent="Hunter2pw",
    ),
    Kind(
        "harbor-url-with-credentials",
        VALID + HARBOR.replace("https://", "https://admin:Hunter2pw@"),
        "the url must not hold credentials",
        "13:10",
        absent="Hunter2pw",
    ),
    Kind(
        "bad-constraint",
        VALID.replace('tags: ["7.2.4"]', 'versions: "1.2.3.4"'),
        "invalid version constraint '1.2.3.4'",
        "6:19",
    ),
    Kind(
        "bad-regex",
        VALID.replace('tags: ["7.2.4"]', "tag-regex: '(?P<v>7'"),
        "invalid tag regex '(?P<v>7'",
        "6:20",
    ),
    Kind("cron-seconds", VALID + HARBOR + '    schedule: "30 0 * * * *"\n', "seconds field to be 0", "15:15"),
    Kind(
        "cron-minute-61",
        VALID + HARBOR + '    schedule: "0 61 * * * *"\n',
        "minutes field '61': '61' is outside 0-59",
        "15:15",
    ),
    Kind(
        "duplicate-target-name",
        VALID + HARBOR.replace("dc1", "lab"),
        "duplicate target name 'lab' (also targets[0])",
        "11:11",
    ),
    Kind(
        "duplicate-replication-region",
        VALID
        + "  - name: aws\n    type: ecr\n    registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n"
        + "    prefix: vendor\n    replicate-to:\n      - region: us-east-1\n"
        + "      - {region: us-east-1, account: '123456789012'}\n",
        "region 'us-east-1' of account 123456789012 is listed twice (also replicate-to[0])",
        "17:9",
    ),
    Kind(
        "same-upstream-other-credentials",
        "version: 1\n"
        + CREDENTIALS
        + VALID.removeprefix("version: 1\n").replace(
            "targets:",
            "  - registry: index.docker.io\n    credentials: hub\n    repositories:\n"
            "      - name: valkey/valkey\n        all-tags: true\ntargets:",
        ),
        "registry 'docker.io' is also sources[0], with another credentials",
        "11:15",
    ),
    Kind(
        "literal-password",
        "version: 1\n"
        + CREDENTIALS.replace("{env: HUB_TOKEN}", "'Hunter2pw'")
        + VALID.removeprefix("version: 1\n"),
        "a literal password is refused",
        "5:15",
        absent="Hunter2pw",
    ),
    Kind(
        "undefined-credentials",
        VALID + "    credentials: lab-push\n",
        "unknown credentials 'lab-push'",
        "11:18",
    ),
    Kind(
        "tag-of-129-characters",
        VALID.replace('"7.2.4"', f'"7.2.4", "{"x" * 129}"'),
        f"tags: tag '{'x' * 40}…' is 129 characters: an OCI tag is at most 128 characters",
        "6:15",
    ),
    Kind(
        "glob-only-longer-than-128",
        VALID.replace('"7.2.4"', f'"v{"?" * 128}*"'),
        "only matches tags of 129 characters or more: an OCI tag is at most 128 characters",
        "6:15",
    ),
    # --- files the spec names, read at load (offline, local) ------------------------------
    Kind(
        "missing-ca-bundle",
        VALID + "    ca-bundle: certs/internal-ca.pem\n",
        "targets[0] (name='lab') › ca-bundle: cannot use certs/internal-ca.pem: No such file or directory",
        "11:16",
    ),
    Kind(
        "ca-bundle-not-pem",
        VALID + "    ca-bundle: spec.yaml\n",
        "ca-bundle: cannot use spec.yaml: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        "11:16",
    ),
]

# Each kind runs through one command, in turn, so that every command's error path is seen
# without running the whole catalogue four times.
COMMANDS: list[tuple[str, ...]] = [
    ("validate",),
    ("plan", "--format", "json"),
    ("render", "terraform", "--target", "lab", "--output", "{out}"),
    ("audit",),
]


def run_in_process(*args: str, capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(list(args))
    finally:
        # main() points the root logger at this test's captured stderr; later tests must not log there.
        root.handlers[:], root.level = handlers, level
    captured = capsys.readouterr()
    code = exited.value.code
    return subprocess.CompletedProcess(
        list(args), code if isinstance(code, int) else 1, captured.out, captured.err
    )


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    return subprocess.run(
        [str(MIRRORSPEC), *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
        preexec_fn=limit,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], where: str) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    assert line.startswith(f"error: {where}"), line[:500]
    assert len(line) < 500, line[:500]
    return line


@pytest.mark.parametrize("index", range(len(KINDS)), ids=[kind.id for kind in KINDS])
def test_bad_input_is_one_line_and_exit_1(
    tmp_path: Path, index: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = KINDS[index]
    if kind.path is not None:
        spec = kind.path(tmp_path)
    else:
        spec = tmp_path / "spec.yaml"
        data = kind.content.encode() if isinstance(kind.content, str) else kind.content
        assert data is not None
        spec.write_bytes(data)
    out = tmp_path / "out.tf.json"
    command = [arg.replace("{out}", str(out)) for arg in COMMANDS[index % len(COMMANDS)]]
    if kind.id in IN_PROCESS:
        monkeypatch.delenv("MIRRORSPEC_DEBUG", raising=False)
        result = run_in_process(*command, str(spec), capsys=capsys)
    else:
        result = run_cli(*command, str(spec), cwd=tmp_path)
    where = f"{spec}:{kind.where}" if kind.where is not None else ""
    line = assert_one_line_error(result, where)
    assert str(spec) in line
    assert kind.expect in line, line[:500]
    if kind.absent is not None:
        assert kind.absent not in result.stderr
    assert not out.exists(), "a failed run wrote its output file"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in {spec.name, "plain-file"}) == []


def test_catalogue_has_at_least_30_distinct_kinds() -> None:
    assert len({kind.id for kind in KINDS}) == len(KINDS) == 10 + 21 + 20 + 2  # as the docstring counts
    assert {kind.id for kind in KINDS} >= IN_PROCESS


def test_the_building_blocks_are_valid(tmp_path: Path) -> None:
    """Each kind fails for its own reason, not because the text around it was broken."""
    parse_spec(VALID)
    parse_spec(VALID + HARBOR)
    parse_spec("version: 1\n" + CREDENTIALS + VALID.removeprefix("version: 1\n"))


def many_repositories(count: int) -> str:
    lines = ["version: 1", "sources:"]
    for s in range(10):
        lines += [f"  - registry: registry{s}.example.com", "    repositories:"]
        for r in range(count // 10):
            lines += [
                f"      - name: team-{s}/service-number-{r}/component  # owned by team {s}",
                '        versions: ">=1.2.0 <2.0.0"',
                "        helm-dependencies: true",
            ]
    return "\n".join([*lines, *VALID.split("\n")[6:]])


@pytest.mark.parametrize(
    "count", [1000, pytest.param(5000, marks=pytest.mark.soak)], ids=["1000-repositories", "5000"]
)
def test_the_limits_leave_room_for_large_real_specs(count: int) -> None:
    text = many_repositories(count)
    assert len(text.encode()) < specmod.MAX_SPEC_BYTES / (7 if count == 1000 else 1.5)
    spec = parse_spec(text)
    assert sum(len(s.repositories) for s in spec.sources) == count


def test_explicit_core_tags_still_work() -> None:
    """`!!str` keeps a version-like tag a string (ruamel would hand it over as a TaggedScalar)."""
    text = VALID.replace('tags: ["7.2.4"]', "tags: [!!str 7.10]").replace("version: 1", "version: !!int '1'")
    assert parse_spec(text).sources[0].repositories[0].tags == ["7.10"]


def test_small_anchors_and_merge_keys_still_work() -> None:
    """The alias limits must not break what anchors are for: sharing a block."""
    text = """\
version: 1
sources:
  - registry: docker.io
    repositories:
      - name: redis
        versions: &seven ">=7 <8"
      - name: valkey/valkey
        versions: *seven
  - registry: quay.io
    repositories: &shared
      - name: prometheus/prometheus
        tags: ["v2.*"]
  - registry: ghcr.io
    repositories: *shared
targets:
  - &lab
    name: lab
    type: registry
    registry: internal.example.com
  - <<: *lab
    name: lab2
    registry: other.example.com
"""
    spec = parse_spec(text)
    assert [r.versions for r in spec.sources[0].repositories] == [">=7 <8", ">=7 <8"]
    assert spec.sources[2].repositories[0].name == "prometheus/prometheus"
    assert [(t.name, t.registry) for t in spec.targets] == [
        ("lab", "internal.example.com"),
        ("lab2", "other.example.com"),
    ]


# --- Helm dependency cycles, against a real registry -------------------------------------

CYCLE_SPEC = """\
version: 1
sources:
  - registry: {host}
    insecure: true
    repositories:
      - name: images/unrelated
        all-tags: true
      - name: {chart}
        versions: "^1.0.0"
        helm-dependencies: {follow}
targets:
  - name: lab
    type: registry
    registry: {host}
    insecure: true
    prefix: mirror
"""


@pytest.fixture(scope="module")
def cyclic_charts(plain_registry: RegistryServer) -> str:
    """cycle/a 1.0.0 → cycle/b ^1 → cycle/a ^1, and selfish/c 1.0.0 → selfish/c ^1."""
    host = plain_registry.host
    push_image(plain_registry, "images/unrelated", "v1")
    for name, other in (("a", "b"), ("b", "a")):
        dependency = {"name": other, "version": "^1.0.0", "repository": f"oci://{host}/cycle"}
        push_chart(plain_registry, f"cycle/{name}", "1.0.0", dependencies=[dependency])
    itself = {"name": "c", "version": "^1.0.0", "repository": f"oci://{host}/selfish"}
    push_chart(plain_registry, "selfish/c", "1.0.0", dependencies=[itself])
    return host


@pytest.mark.parametrize(
    ("chart", "follow", "chain"),
    [
        ("cycle/a", "true", ["cycle/a", "cycle/b", "cycle/a"]),
        ("selfish/c", "newest", ["selfish/c", "selfish/c"]),
    ],
    ids=["a-b-a", "a-a"],
)
def test_a_helm_dependency_cycle_is_one_line_naming_the_cycle_and_the_entry(
    tmp_path: Path, cyclic_charts: str, chart: str, follow: str, chain: list[str]
) -> None:
    host = cyclic_charts
    spec = tmp_path / "spec.yaml"
    spec.write_text(CYCLE_SPEC.format(host=host, chart=chart, follow=follow), encoding="utf-8")
    result = run_cli("plan", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:8:9: ")
    cycle = " → ".join(f"{host}/{name}:1.0.0" for name in chain)
    assert (
        f"sources[0] › repositories[1] (name='{chart}'): Helm chart dependencies form a cycle: {cycle} "
        in line
    )
    assert "helm-dependencies: false" in line


# --- a tag-regex that backtracks exponentially, against a real registry ---------------------

RUNAWAY_SPEC = """\
version: 1
sources:
  - registry: {host}
    insecure: true
    repositories:
      - name: images/runaway
        tag-regex: "^(a|a)+$"
targets:
  - name: lab
    type: registry
    registry: {host}
    insecure: true
    prefix: mirror
"""


def test_a_runaway_tag_regex_is_one_line_naming_the_entry(
    tmp_path: Path, plain_registry: RegistryServer
) -> None:
    # Seconds at 30 characters, doubling with each further 'a'; the budget is 2 s.
    tag = "a" * 60 + "-x"
    push_image(plain_registry, "images/runaway", tag)
    spec = tmp_path / "spec.yaml"
    spec.write_text(RUNAWAY_SPEC.format(host=plain_registry.host), encoding="utf-8")
    result = run_cli("plan", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:6:9: ")
    entry = "sources[0] › repositories[0] (name='images/runaway') › tag-regex"
    assert f"{entry}: tag regex '^(a|a)+$' needs more than 2 s" in line
    assert f"stuck on '{tag}'" in line


# --- generated specs ----------------------------------------------------------------------
#
# Mutations of the example specs, as data (a value deleted, replaced by a random scalar or
# collection, retyped, an unknown key added, an item duplicated) and as text (random
# characters spliced into the YAML), plus random documents from scratch. Whatever comes
# out, parse_spec either accepts it or raises SpecError with one short line: no other
# exception ever escapes.

EXAMPLE_TREES = [
    json.loads(json.dumps(YAML(typ="safe").load(path.read_text(encoding="utf-8"))))
    for path in sorted(EXAMPLES.glob("*.yaml"))
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "*", "1.2.3", ">=1 <2", "docker.io", "a" * 300, "0 0 * * * *", "yes", "~", "null"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


EXAMPLE_TEXTS = [path.read_text(encoding="utf-8") for path in sorted(EXAMPLES.glob("*.yaml"))]


def byte_splices(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with a few random bytes written over it (invalid UTF-8, NULs, anything)."""
    return st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(data)), st.binary(min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    ).map(lambda edits: _apply(data, edits))


def _apply(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    for position, insert in edits:
        data = data[:position] + insert + data[position + len(insert) :]
    return data


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths_of(value, (*prefix, i))
    return found


def at(tree: Any, path: tuple[Any, ...]) -> Any:
    for seg in path:
        tree = tree[seg]
    return tree


@st.composite
def mutated_trees(draw: st.DrawFn) -> Any:
    tree = json.loads(json.dumps(draw(st.sampled_from(EXAMPLE_TREES))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths_of(tree)))
        if not path:
            continue
        parent, key = at(tree, path[:-1]), path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "retype", "unknown-key", "duplicate"]))
        if operation == "delete":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(values)
        elif operation == "retype":
            value = parent[key]
            parent[key] = draw(
                st.sampled_from([[value], {"value": value}, str(value), len(str(value)), None, bool(value)])
            )
        elif operation == "unknown-key" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[key])))
    return tree


def dump(tree: Any) -> str:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    from io import StringIO

    out = StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


def check(text: str) -> None:
    try:
        parse_spec(text, filename="gen.yaml")
        event("accepted")
    except SpecError as exc:
        event("SpecError: " + ("YAML" if "invalid YAML" in str(exc) else "schema"))
        message = str(exc)
        assert "\n" not in message, message
        assert message.startswith("gen.yaml"), message
        assert len(message) < 1000, message


GENERATED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    # a spec example is ~2 KB of YAML; generating one is not the slow part, parsing is
    suppress_health_check=[HealthCheck.too_slow],
)


@GENERATED
@given(mutated_trees())
def test_mutated_examples_fail_cleanly(tree: Any) -> None:
    check(dump(tree))


@st.composite
def spliced_texts(draw: st.DrawFn) -> str:
    text = dump(draw(st.sampled_from(EXAMPLE_TREES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=8))
        insert = draw(
            st.text(max_size=6)
            | st.sampled_from(
                ["\t", "\x00", ": ", "- ", "&a ", "*a", "!!binary ", "{", "[", "'", '"', "---\n", "<<: "]
            )
        )
        text = text[:position] + insert + text[position + cut :]
    return text


@GENERATED
@given(spliced_texts())
def test_spliced_text_fails_cleanly(text: str) -> None:
    check(text)


@GENERATED
@given(
    st.dictionaries(
        st.sampled_from(["version", "mode", "layout", "credentials", "sources", "targets"]), values
    )
)
def test_random_documents_fail_cleanly(document: dict[str, Any]) -> None:
    check(dump({"version": 1, **document}))


@GENERATED
@given(st.binary(max_size=200) | st.sampled_from(EXAMPLE_TEXTS).map(str.encode).flatmap(byte_splices))
def test_random_bytes_in_a_file_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "spec.yaml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except SpecError as exc:
        assert "\n" not in str(exc)
        assert str(exc).startswith(str(path))


SOAK = settings(GENERATED, max_examples=5000)


@pytest.mark.soak
@SOAK
@given(mutated_trees())
def test_soak_mutated_examples(tree: Any) -> None:
    check(dump(tree))


@pytest.mark.soak
@SOAK
@given(spliced_texts())
def test_soak_spliced_text(text: str) -> None:
    check(text)
