"""Harbor's own test tables, restated as data: golden vectors for our filter and namespace rules.

The emulator's matcher and namespace replacement, and the provider's translation on top of them,
were written by the same hands; these vectors were not. Each table below restates the cases of a
Go test (or a documented example) in Harbor or in the library Harbor calls, at the commit named
beside it — the facts (input, expected result), not the code.

- `replaceNamespace`: goharbor/harbor `src/controller/replication/flow/stage_test.go`
  (TestReplaceNamespace, commit 738fde7d3bd8f201711907a826630b3fe5d13e16) and the examples in
  the comment above `replaceNamespace` in `src/controller/replication/flow/stage.go` (commit
  de281220b52ecd1427b5c0505ea71d7cdc547c11; both unchanged at c50c7ddd6ea4e335a480b49c618281882ab7eec9).
- `util.Match` / `IsSpecificPath` / `IsSpecificPathComponent`: goharbor/harbor
  `src/pkg/reg/util/pattern_test.go` (commit 59c3de10a65890517fced56b1923e98e9ab9e002).
- `doublestar.Match`: Harbor pins github.com/bmatcuk/doublestar v1.3.4 (`src/go.mod`); its
  `matchTests` table, bmatcuk/doublestar `doublestar_test.go` at tag v1.3.4 (commit
  ec92414acf6b37022a5de45c2cfb10569c523730). Cases that only exercise the file system (symlinks)
  are left out; the rest are pure string matches.
"""

from __future__ import annotations

import pytest
from emulators.harbor import (
    AT_LEAST_TWO,
    ONLY_TWO,
    doublestar_match,
    is_specific_path,
    is_specific_path_component,
    replace_namespace,
)

from mirrorspec import paths
from mirrorspec.context import RunContext
from mirrorspec.providers.harbor import native as harbor
from mirrorspec.spec import parse_spec

BAD = "bad pattern"  # doublestar.ErrBadPattern

# (repository, namespace, replace count, destination path type, result or None for an error)
REPLACE_NAMESPACE = [
    # stage_test.go TestReplaceNamespace
    ("c", "", 0, "", "c"),
    ("c", "n", -1, "", "n/c"),
    ("b/c", "n", -1, "", "n/c"),
    ("a/b/c", "n", -1, "", "n/c"),
    ("a/b", "n", 2, "", None),  # more than the path has, excepting its last component
    ("a/b/c", "n", 0, "", "n/a/b/c"),
    ("a/b/c", "n", 1, "", "n/b/c"),
    ("a/b/c", "n", 2, "", "n/c"),
    ("a/b/c", "n", 1, ONLY_TWO, None),  # n/b/c has 3 components, the registry takes 2
    ("a", "n", 0, "", "n/a"),
    # stage.go, the comment above replaceNamespace
    ("a/b/c/image", "n", -1, "", "n/image"),
    ("a/b/c/image", "n", 0, "", "n/a/b/c/image"),
    ("a/b/c/image", "n", 1, "", "n/b/c/image"),
    ("a/b/c/image", "n", 2, "", "n/c/image"),
    ("a/b/c/image", "n", 3, "", "n/image"),
]


@pytest.mark.parametrize(("repository", "namespace", "count", "path_type", "expected"), REPLACE_NAMESPACE)
def test_replace_namespace_follows_harbors_vectors(
    repository: str, namespace: str, count: int, path_type: str, expected: str | None
) -> None:
    assert replace_namespace(repository, namespace, count, path_type) == expected


# pattern_test.go TestMatch: Harbor's util.Match (an empty pattern matches everything).
HARBOR_MATCH = [
    ("", "library", True),
    ("", "", True),
    ("*", "library", True),
    ("*", "library/hello-world", False),
    ("**", "library/hello-world", True),
    ("{library,harbor}/**", "library/hello-world", True),
    ("{library,harbor}/**", "harbor/hello-world", True),
    ("1.?", "1.0", True),
    ("1.?", "1.01", False),
    ("v2.[4-6].*", "v2.4.0", True),
    ("v2.[4-7].*", "v2.7.0", True),
]

# doublestar v1.3.4 matchTests: (pattern, name, True/False, or BAD for ErrBadPattern).
DOUBLESTAR_MATCH: list[tuple[str, str, bool | str]] = [
    ("*", "", True),
    ("*", "/", False),
    ("/*", "/", True),
    ("/*", "/debug/", False),
    ("/*", "//", False),
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("*/", "a/", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*", "axbxcxdxe", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "ab", False),
    ("a?b", "a\u263ab", True),
    ("a[^a]b", "a\u263ab", True),
    ("a???b", "a\u263ab", False),
    ("a[^a][^a][^a]b", "a\u263ab", False),
    ("[a-\u03b6]*", "\u03b1", True),
    ("*[a-\u03b6]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", BAD),
    ("[-]", "-", BAD),
    ("[x-]", "x", BAD),
    ("[x-]", "-", BAD),
    ("[x-]", "z", BAD),
    ("[-x]", "x", BAD),
    ("[-x]", "-", BAD),
    ("[-x]", "a", BAD),
    ("\\", "a", BAD),
    ("[a-b-c]", "a", BAD),
    ("[", "a", BAD),
    ("[^", "a", BAD),
    ("[^bc", "a", BAD),
    ("a[", "a", False),  # the name ends before the malformed part is reached
    ("a[", "ab", BAD),
    ("*x", "xxx", True),
    ("[abc]", "b", True),
    ("a/**", "a", False),
    ("a/**", "a/b", True),
    ("a/**", "a/b/c", True),
    ("**/c", "c", True),
    ("**/c", "b/c", True),
    ("**/c", "a/b/c", True),
    ("**/c", "a/b", False),
    ("**/c", "abcd", False),
    ("**/c", "a/abc", False),
    ("a/**/b", "a/b", True),
    ("a/**/c", "a/b/c", True),
    ("a/**/d", "a/b/c/d", True),
    ("a/\\**", "a/b/c", False),
    ("a//b/c", "a/b/c", False),
    ("a/b/c", "a/b//c", False),
    ("a/", "a", False),
    ("ab{c,d}", "abc", True),
    ("ab{c,d,*}", "abcde", True),
    ("ab{c,d}[", "abcd", BAD),
    ("a{,bc}", "a", True),
    ("a{,bc}", "abc", True),
    ("a/{b/c,c/b}", "a/b/c", True),
    ("a/{b/c,c/b}", "a/c/b", True),
    ("{a/{b,c},abc}", "a/b", True),
    ("{a/{b,c},abc}", "a/c", True),
    ("{a/{b,c},abc}", "abc", True),
    ("{a/{b,c},abc}", "a/b/c", False),
    ("{a/ab*}", "a/abc", True),
    ("{a/*}", "a/b", True),
    ("{a/abc}", "a/abc", True),
    ("{a/b,a/c}", "a/c", True),
    ("abc/**", "abc/b", True),
    ("**/abc", "abc", True),
    ("abc**", "abc/b", False),
    ("**/*.txt", "abc/\u3010test\u3011.txt", True),
    ("**/\u3010*", "abc/\u3010test\u3011.txt", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), HARBOR_MATCH)
def test_harbor_match_vectors(pattern: str, name: str, expected: bool) -> None:
    assert doublestar_match(pattern, name) is expected


@pytest.mark.parametrize(("pattern", "name", "expected"), DOUBLESTAR_MATCH)
def test_doublestar_v1_vectors(pattern: str, name: str, expected: bool | str) -> None:
    if expected == BAD:
        with pytest.raises(ValueError, match="bad pattern"):
            doublestar_match(pattern, name)
    else:
        assert doublestar_match(pattern, name) is expected


# pattern_test.go TestIsSpecificPathComponent and TestIsSpecificPath (None: not specific).
SPECIFIC_COMPONENT = [
    ("", None),
    ("library/hello-world", None),
    ("library", ["library"]),
    ("lib*", None),
    ("{library}", ["library"]),
    ("{library,test}", ["library", "test"]),
    ("{library{a}c}", None),
]
SPECIFIC_PATH = [
    ("", None),
    ("library", ["library"]),
    ("library/hello-world", ["library/hello-world"]),
    ("library/**", None),
    ("{library}", ["library"]),
    ("library/{hello-world,busybox}", ["library/hello-world", "library/busybox"]),
]


@pytest.mark.parametrize(("component", "expected"), SPECIFIC_COMPONENT)
def test_specific_path_component_vectors(component: str, expected: list[str] | None) -> None:
    assert is_specific_path_component(component) == expected


@pytest.mark.parametrize(("path", "expected"), SPECIFIC_PATH)
def test_specific_path_vectors(path: str, expected: list[str] | None) -> None:
    assert is_specific_path(path) == expected


# --- the provider's translation, through the rules the vectors above pin down ---------------

SPEC = """
version: 1
layout: {layout}
credentials:
  harbor-admin: {{username: admin, password: {{env: HARBOR_PASSWORD}}}}
sources:
  - registry: docker.io
    repositories: [{{name: redis, versions: ">=7.0.0"}}, {{name: bitnami/postgresql, versions: "^16"}}]
  - registry: public.cr.seqera.io
    repositories: [{{name: charts/platform, versions: ">=1.0.0"}}]
  - registry: cr.seqera.io
    repositories: [{{name: private/nf-tower-enterprise/backend, tags: ["v25.1.*"]}}]
targets:
  - {{name: dc1, type: harbor, url: "https://harbor.example.com", project: vendor,
      credentials: harbor-admin}}
"""
REPOSITORIES = [
    ("docker.io", "library/redis"),
    ("docker.io", "bitnami/postgresql"),
    ("public.cr.seqera.io", "charts/platform"),
    ("cr.seqera.io", "private/nf-tower-enterprise/backend"),
]


@pytest.mark.parametrize("layout", ["scoped", "flat"])
@pytest.mark.parametrize(("host", "repository"), REPOSITORIES)
def test_policies_land_where_paths_destination_says(
    layout: str, host: str, repository: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Harbor computes a pull policy's destination with replaceNamespace; the local Harbor, the
    destination of a pull, takes repositories of at least two components (its adapter's
    SupportedRepositoryPathComponentType, src/pkg/reg/adapter/harbor/base/adapter.go)."""
    monkeypatch.setenv("HARBOR_PASSWORD", "x")
    spec = parse_spec(SPEC.format(layout=layout), filename="harbor.yaml")
    ctx = RunContext(spec)
    (policy,) = harbor._policies(spec.targets[0], ctx, host, repository, ["1.0.0", "1.1.0"])
    (name_filter,) = [f["value"] for f in policy.attrs["filters"] if f["type"] == "name"]
    assert is_specific_path(name_filter) == [repository]  # no _catalog listing upstream
    landed = replace_namespace(
        repository,
        policy.attrs["dest_namespace"],
        policy.attrs["dest_namespace_replace_count"],
        AT_LEAST_TWO,
    )
    assert landed == paths.destination("vendor", layout, host, repository)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tags",
    [
        ["1.0.0"],
        ["1.2.0", "1.5.3"],
        [f"16.{minor}.{patch}" for minor in range(12) for patch in range(12)],
        ["v25.1.0", "v25.1.0-rc.1", "latest", "1_0", "A.b-C"],
    ],
)
def test_tag_filters_select_exactly_the_listed_tags(tags: list[str]) -> None:
    filters = harbor._tag_filters("bitnami/postgresql", tags)
    for tag in tags:
        assert sum(doublestar_match(f, tag) for f in filters) == 1, tag
    near_misses = {t + suffix for t in tags for suffix in ("0", ".1", "-x")} | {t[:-1] for t in tags}
    for other in near_misses - set(tags):
        assert not any(doublestar_match(f, other) for f in filters), other
