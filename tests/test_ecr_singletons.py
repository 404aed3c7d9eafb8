"""ECR's two per-registry documents, shared with everyone else who writes them.

The replication configuration and the registry policy are one document per registry, and
`PutReplicationConfiguration` / `PutRegistryPolicy` replace the whole of it (research/ecr.md §2.1,
§2.4). mirrorspec owns one rule (its only filter is the target's prefix) and one statement per
destination account (by Sid); everything else in those documents belongs to someone else and
must come back exactly as it was, in its order.

Properties (hypothesis): for generated foreign documents within the botocore model's limits,
apply → apply a changed spec with --prune → apply --prune without replication keeps every
foreign rule and statement as generated and in order, with ours present exactly once or absent
as the spec says. Deterministic tests: another writer changing a document between our read and
our write (armed with `EcrEmulator.after`, so the change goes through the API like a real
writer's) is detected and nothing is written; a write right after ours is reported; the next
apply converges.

Real parts: moto in server mode behind the ECR contract emulator, which validates every request
against botocore's model. No registry is needed: the spec's one source is served by a
pull-through cache rule, so nothing is copied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from emulators.ecr import EcrEmulator
from hypothesis import HealthCheck, example, given, settings, strategies as st
from plan_helpers import converge, plan_changes

from mirrorspec import cli, cli_common, engine
from mirrorspec.context import RunContext
from mirrorspec.errors import ProviderConflict
from mirrorspec.plan import Change
from mirrorspec.providers import ecr as ecr_provider
from mirrorspec.providers.ecr.clients import AWS
from mirrorspec.spec import parse_spec

ACCOUNT = "123456789012"
REGION = "eu-west-1"
DR_ACCOUNT = "210987654321"
DR_REGION = "eu-central-1"
OUR_SID = f"mirrorspec-replicate-from-{ACCOUNT}"
OUR_PREFIXES = ("vendor", "platform/mirror", "rule-1")  # rule-1: the id of an unnamed foreign rule

# The botocore 1.44.8 model's limits (research/ecr.md §2.1): 25 rules, 100 destinations and
# 100 filters per rule. One of the 25 rules is ours.
MAX_RULES = 25
MAX_DESTINATIONS = 100
MAX_FILTERS = 100
REGISTRY_ACTIONS = ("ecr:ReplicateImage", "ecr:CreateRepository", "ecr:BatchImportUpstreamImage")

SPEC = """\
version: 1
mode: cache
sources:
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        all-tags: true
targets:
  - name: aws
    type: ecr
    registry: {account}.dkr.ecr.{region}.amazonaws.com
    prefix: {prefix}
"""
CROSS_ACCOUNT = f'      - {{region: {DR_REGION}, account: "{DR_ACCOUNT}", profile: dr}}\n'


def spec_text(prefix: str, regions: tuple[str, ...], cross_account: bool = True) -> str:
    text = SPEC.format(account=ACCOUNT, region=REGION, prefix=prefix)
    if regions or cross_account:
        text += "    replicate-to:\n" + "".join(f"      - region: {r}\n" for r in regions)
        text += CROSS_ACCOUNT if cross_account else ""
    return text


def our_rule(prefix: str, regions: tuple[str, ...], cross_account: bool = True) -> dict[str, Any]:
    destinations = [{"region": r, "registryId": ACCOUNT} for r in regions]
    if cross_account:
        destinations.append({"region": DR_REGION, "registryId": DR_ACCOUNT})
    return {
        "destinations": destinations,
        "repositoryFilters": [{"filter": prefix + "/", "filterType": "PREFIX_MATCH"}],
    }


OUR_STATEMENT = {
    "Sid": OUR_SID,
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": f"arn:aws:ecr:{DR_REGION}:{DR_ACCOUNT}:repository/*",
}
STATEMENT_ID = f"{DR_ACCOUNT}/{DR_REGION}/{OUR_SID}"


# --- the bed ----------------------------------------------------------------------------------


@dataclass
class Bed:
    emu: EcrEmulator
    clients: dict[tuple[str, str], Any]

    def client(self, service: str, region: str = REGION) -> Any:
        # boto3 clients take tens of milliseconds to build: one per service and region.
        if (service, region) not in self.clients:
            self.clients[service, region] = self.emu.client(service, region=region)
        return self.clients[service, region]

    def aws_client(self, ctx: RunContext, service: str, region: str, profile: str | None) -> Any:
        return self.client(service, region)

    def ctx(self, text: str) -> RunContext:
        return RunContext(parse_spec(text), workers=1, client_factories={AWS: self.aws_client})

    # What ECR holds, read back through the API.
    def rules(self) -> list[dict[str, Any]]:
        config = self.client("ecr").describe_registry()["replicationConfiguration"]
        return list(config.get("rules", []))

    def policy(self) -> dict[str, Any] | None:
        try:
            text = self.client("ecr", DR_REGION).get_registry_policy()["policyText"]
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "RegistryPolicyNotFoundException"
            return None
        return dict(json.loads(text))

    def statements(self) -> list[dict[str, Any]]:
        policy = self.policy()
        found = [] if policy is None else policy["Statement"]
        return [found] if isinstance(found, dict) else list(found)

    def plant(self, rules: list[dict[str, Any]], policy_text: str | None) -> None:
        """Write both documents as another tool would: whole, replacing what was there."""
        self.client("ecr").put_replication_configuration(replicationConfiguration={"rules": rules})
        if policy_text is not None:
            self.client("ecr", DR_REGION).put_registry_policy(policyText=policy_text)

    def puts(self, since: int) -> list[str]:
        """The document writes the emulator served since call number `since`."""
        writes = {"PutReplicationConfiguration", "PutRegistryPolicy", "DeleteRegistryPolicy"}
        return [op for op in self.emu.operations[since:] if op in writes]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@pytest.fixture
def bed(emulator: EcrEmulator) -> Iterator[Bed]:
    emulator.reset()
    yield Bed(emulator, {})
    emulator.check()


# --- strategies: foreign documents within the model's limits ------------------------------------

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1", "ap-northeast-1", "sa-east-1")
ACCOUNTS = (ACCOUNT, DR_ACCOUNT, "999988887777", "111122223333")

regions = st.sampled_from(REGIONS) | st.from_regex(r"[a-z]{2}(-[a-z]{2,8}){1,2}-[1-9]", fullmatch=True)
accounts = st.sampled_from(ACCOUNTS) | st.from_regex(r"[0-9]{12}", fullmatch=True)
destinations = st.fixed_dictionaries({"region": regions, "registryId": accounts}).filter(
    lambda d: (d["region"], d["registryId"]) != (REGION, ACCOUNT)  # ECR refuses replicating to itself
)


def filter_strings(ours: str) -> st.SearchStrategy[str]:
    """Repository prefixes (model pattern, 2-256 characters), many of them overlapping ours."""
    near = [ours, ours + "/", ours + "/sub", ours[:-1], ours + "-b", ours + "x", ours.split("/")[0]]
    generated = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?(/[a-z0-9]{1,8}){0,2}/?", fullmatch=True)
    return st.sampled_from([p for p in near if len(p) >= 2]) | generated.filter(lambda p: len(p) >= 2)


@st.composite
def foreign_rule(draw: st.DrawFn, ours: str, max_destinations: int, max_filters: int) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "destinations": draw(
            st.lists(
                destinations,
                min_size=1,
                max_size=max_destinations,
                unique_by=lambda d: (d["region"], d["registryId"]),
            )
        )
    }
    filters = draw(st.lists(filter_strings(ours), max_size=max_filters, unique=True))
    if filters:  # none: the rule replicates every repository
        rule["repositoryFilters"] = [{"filter": f, "filterType": "PREFIX_MATCH"} for f in filters]
    delete = draw(st.sampled_from([None, True, False]))
    if filters in ([ours], [ours + "/"]) and not delete:
        # Exactly the rule mirrorspec writes (`<prefix>/`, or `<prefix>` before issue 13) is
        # mirrorspec's by definition (ECR rules carry no owner); with deleteReplication on, it
        # is not one mirrorspec wrote.
        delete = True
    if delete is not None:
        rule["deleteReplication"] = {"enabled": delete}
    return rule


def foreign_rules(
    ours: str, max_destinations: int, max_filters: int
) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(foreign_rule(ours, max_destinations, max_filters), max_size=MAX_RULES - 1)


iam_arns = accounts.map(lambda a: f"arn:aws:iam::{a}:root") | st.builds(
    "arn:aws:iam::{}:role/{}".format, accounts, st.sampled_from(["replicator", "ci/pusher"])
)
principals = st.one_of(
    st.just("*"),
    st.fixed_dictionaries({"AWS": iam_arns | accounts}),
    st.fixed_dictionaries({"AWS": st.lists(iam_arns, min_size=1, max_size=3, unique=True)}),
)
# IAM compares actions case-insensitively; the text must still come back as written.
actions = st.sampled_from([*REGISTRY_ACTIONS, "ecr:replicateimage", "ECR:CreateRepository"])
repository_arns = st.builds(
    "arn:aws:ecr:{}:{}:repository/{}".format,
    regions,
    accounts,
    st.sampled_from(["*", "shared/*", "team-a/app", "vendor/*"]),
)
conditions = st.sampled_from(
    [
        {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
        {"StringLike": {"aws:PrincipalArn": ["arn:aws:iam::*:role/replicator"]}},
        {"Bool": {"aws:SecureTransport": "true"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    ]
)
# Other mirrorspec installations' Sids, and near-misses of ours, are someone else's.
sids = st.sampled_from(
    [
        "mirrorspec-replicate-from-999988887777",
        f"{OUR_SID}-old",
        "mirrorspec-",
        "MirrorspecReplicate",
        "TeamC",
    ]
) | st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True)


@st.composite
def statements(draw: st.DrawFn) -> dict[str, Any]:
    statement: dict[str, Any] = {}
    sid = draw(st.none() | sids)
    if sid is not None:
        statement["Sid"] = sid
    statement["Effect"] = draw(st.sampled_from(["Allow", "Deny"]))
    statement["Principal"] = draw(principals)
    statement["Action"] = draw(actions | st.lists(actions, min_size=1, max_size=3, unique=True))
    statement["Resource"] = draw(
        st.just("*") | repository_arns | st.lists(repository_arns, min_size=1, max_size=3, unique=True)
    )
    condition = draw(st.none() | conditions)
    if condition is not None:
        statement["Condition"] = condition
    return statement


@dataclass(frozen=True)
class ForeignPolicy:
    text: str | None  # None: the registry has no policy
    header: dict[str, Any]  # every top-level key but Statement
    statements: list[dict[str, Any]]


@st.composite
def foreign_policies(draw: st.DrawFn) -> ForeignPolicy:
    found = draw(st.lists(statements(), max_size=8, unique_by=lambda s: s.get("Sid") or object()))
    if not found:
        return ForeignPolicy(None, {}, [])
    header: dict[str, Any] = {}
    version = draw(st.sampled_from(["2012-10-17", "2008-10-17", None]))
    if version is not None:
        header["Version"] = version
    if draw(st.booleans()):
        header["Id"] = "team-c-registry-policy"
    single = len(found) == 1 and draw(st.booleans())  # Statement may be one object, not a list
    document = {**header, "Statement": found[0] if single else found}
    text = json.dumps(document, indent=draw(st.sampled_from([None, 2])))
    return ForeignPolicy(text, header, found)


@dataclass(frozen=True)
class Stale:
    """Rules and a statement of ours left by an earlier run, somewhere among the foreign ones:
    `rules_at` holds one position per copy (an interrupted run can leave more than one)."""

    rules_at: tuple[int, ...]
    statement_at: int | None


stale = st.builds(
    Stale,
    st.lists(st.integers(0, MAX_RULES - 1), max_size=2).map(tuple),
    st.none() | st.integers(0, 8),
)


def scenarios(max_destinations: int, max_filters: int) -> st.SearchStrategy[tuple[str, list[dict[str, Any]]]]:
    """Our prefix, and foreign rules drawn around it."""
    return st.sampled_from(OUR_PREFIXES).flatmap(
        lambda prefix: st.tuples(st.just(prefix), foreign_rules(prefix, max_destinations, max_filters))
    )


# --- the property -------------------------------------------------------------------------------


def check_documents(
    bed: Bed, rules: list[dict[str, Any]], ours: dict[str, Any] | None, policy: ForeignPolicy, statement: bool
) -> None:
    """Every foreign rule and statement exactly as generated, in order; ours once or not at all."""
    found = bed.rules()
    assert [r for r in found if r != ours] == rules
    assert found.count(ours) == (ours is not None)
    held = bed.statements()
    assert [s for s in held if s != OUR_STATEMENT] == policy.statements
    assert held.count(OUR_STATEMENT) == statement
    document = bed.policy()
    if document is not None and policy.text is not None:
        assert {k: v for k, v in document.items() if k != "Statement"} == policy.header
    assert (document is None) == (not policy.statements and not statement)


def foreign_documents_survive(
    bed: Bed, scenario: tuple[str, list[dict[str, Any]]], policy: ForeignPolicy, old: Stale
) -> None:
    prefix, rules = scenario
    bed.emu.reset()
    planted = list(rules)
    for at in old.rules_at[: MAX_RULES - len(rules)]:
        planted.insert(min(at, len(planted)), our_rule(prefix, ("us-west-2",), cross_account=False))
    policy_text = policy.text
    if old.statement_at is not None:
        stale_statement = {
            **OUR_STATEMENT,
            "Resource": f"arn:aws:ecr:{DR_REGION}:{DR_ACCOUNT}:repository/old/*",
        }
        held = list(policy.statements)
        held.insert(min(old.statement_at, len(held)), stale_statement)
        policy_text = json.dumps({**policy.header, "Statement": held})
    bed.plant(planted, policy_text)

    first = ("us-east-1",)
    _, second = converge(bed.ctx(spec_text(prefix, first)))
    assert second.empty, plan_changes(second)
    check_documents(bed, rules, our_rule(prefix, first), policy, statement=True)

    changed = ("us-east-1", "ap-northeast-1")
    _, second = converge(bed.ctx(spec_text(prefix, changed)), prune=True)
    assert second.empty, plan_changes(second)
    check_documents(bed, rules, our_rule(prefix, changed), policy, statement=True)

    # Without replicate-to the spec names no destination account, so the engine cannot read
    # its policy and our statement stays (see the report on issue #8); the provider's delete,
    # which a prune would run, must leave every foreign statement as it was.
    plan, second = converge(bed.ctx(spec_text(prefix, (), cross_account=False)), prune=True)
    assert second.empty, plan_changes(second)
    assert ("delete", "replication-rule", prefix) in plan_changes(plan)
    check_documents(bed, rules, None, policy, statement=True)
    ctx = bed.ctx(spec_text(prefix, changed))
    target = ctx.spec.target("aws")
    ecr_provider.apply(
        Change("delete", ecr_provider.STATEMENT, STATEMENT_ID, OUR_STATEMENT, None), target, ctx
    )
    check_documents(bed, rules, None, policy, statement=False)


# The minimal falsifying examples hypothesis found in the code before issue #8, kept as
# explicit examples: another installation's `mirrorspec-` statement was pruned as ours, and a
# rule naming only our prefix but with deleteReplication on was taken for ours and replaced.
OTHER_INSTALLATION = {
    "Sid": "mirrorspec-replicate-from-999988887777",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "ecr:ReplicateImage",
    "Resource": "*",
}
DELETES_ON_OUR_PREFIX = {
    "destinations": [{"region": "us-east-1", "registryId": ACCOUNT}],
    "repositoryFilters": [{"filter": "vendor", "filterType": "PREFIX_MATCH"}],
    "deleteReplication": {"enabled": True},
}
NO_POLICY = ForeignPolicy(None, {}, [])


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    # The bed is the module's emulator, reset by the property itself for every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(max_destinations=6, max_filters=6), policy=foreign_policies(), old=stale)
@example(
    scenario=("vendor", []),
    policy=ForeignPolicy(
        json.dumps({"Version": "2012-10-17", "Statement": [OTHER_INSTALLATION]}),
        {"Version": "2012-10-17"},
        [OTHER_INSTALLATION],
    ),
    old=Stale((), None),
)
@example(scenario=("vendor", [DELETES_ON_OUR_PREFIX]), policy=NO_POLICY, old=Stale((), None))
def test_foreign_rules_and_statements_survive_apply_change_and_prune(
    bed: Bed, scenario: tuple[str, list[dict[str, Any]]], policy: ForeignPolicy, old: Stale
) -> None:
    foreign_documents_survive(bed, scenario, policy, old)


@pytest.mark.soak
@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(scenario=scenarios(MAX_DESTINATIONS, MAX_FILTERS), policy=foreign_policies(), old=stale)
def test_soak_foreign_rules_and_statements_survive_at_the_model_limits(
    bed: Bed, scenario: tuple[str, list[dict[str, Any]]], policy: ForeignPolicy, old: Stale
) -> None:
    foreign_documents_survive(bed, scenario, policy, old)


# --- the model's limits -----------------------------------------------------------------------


def test_twenty_four_foreign_rules_at_the_model_limits_leave_room_for_ours_and_no_more(bed: Bed) -> None:
    widest = {
        "destinations": [{"region": "us-east-1", "registryId": f"{i:012d}"} for i in range(MAX_DESTINATIONS)],
        "repositoryFilters": [
            {"filter": f"team-{i:03d}", "filterType": "PREFIX_MATCH"} for i in range(MAX_FILTERS)
        ],
    }
    rules = [widest] + [
        {
            "destinations": [{"region": "ap-south-1", "registryId": ACCOUNT}],
            "repositoryFilters": [{"filter": f"vendor/team-{i}", "filterType": "PREFIX_MATCH"}],
        }
        for i in range(MAX_RULES - 2)
    ]
    bed.plant(rules, None)
    spec = spec_text("vendor", ("us-east-1",), cross_account=False)
    _, second = converge(bed.ctx(spec))
    assert second.empty
    assert bed.rules() == [*rules, our_rule("vendor", ("us-east-1",), cross_account=False)]

    full = [*rules, {**rules[1], "repositoryFilters": [{"filter": "other", "filterType": "PREFIX_MATCH"}]}]
    bed.plant(full, None)
    with pytest.raises(ProviderConflict, match="25 other replication rules \\+ ours exceed ECR's 25"):
        engine.plan(bed.ctx(spec))
    assert bed.rules() == full


# --- someone else writing at the same time ----------------------------------------------------

TEAM_A = {
    "destinations": [{"region": "ap-south-1", "registryId": ACCOUNT}],
    "repositoryFilters": [{"filter": "team-a", "filterType": "PREFIX_MATCH"}],
}
TEAM_B = {
    "destinations": [{"region": "us-west-2", "registryId": "999988887777"}],
    "repositoryFilters": [
        {"filter": "vendor", "filterType": "PREFIX_MATCH"},
        {"filter": "team-b", "filterType": "PREFIX_MATCH"},
    ],
}
TEAM_C = {
    "Sid": "TeamC",
    "Effect": "Allow",
    "Principal": {"AWS": ["arn:aws:iam::444455556666:root"]},
    "Action": "ecr:ReplicateImage",
    "Resource": f"arn:aws:ecr:{DR_REGION}:{DR_ACCOUNT}:repository/team-c/*",
}
TEAM_D = {"Effect": "Deny", "Principal": "*", "Action": "ecr:CreateRepository", "Resource": "*"}
REPLICATION_ONLY = spec_text("vendor", ("us-east-1",), cross_account=False)
OURS = our_rule("vendor", ("us-east-1",), cross_account=False)
RULE_FAILURE = (
    "aws: create replication-rule vendor: the replication configuration of registry 123456789012 in eu-west-1"
)
STATEMENT_FAILURE = (
    f"aws: create registry-policy-statement {STATEMENT_ID}: the registry policy of registry "
    f"{DR_ACCOUNT} in {DR_REGION}"
)
CHANGED_MEANWHILE = (
    " changed by someone else while mirrorspec was writing it; nothing written; run plan again"
)
CHANGED_AFTER = (
    " is not what mirrorspec just wrote: someone else wrote it right after, or ECR rewrote it; run plan again"
)


def policy_text(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def writes_rules(bed: Bed, rules: list[dict[str, Any]]) -> Callable[[], None]:
    """Another tool, with its own client, replacing the replication configuration."""
    other = bed.emu.client("ecr")
    return lambda: other.put_replication_configuration(replicationConfiguration={"rules": rules})


def writes_policy(bed: Bed, text: str) -> Callable[[], None]:
    other = bed.emu.client("ecr", DR_REGION)
    return lambda: other.put_registry_policy(policyText=text)


def test_a_rule_added_between_our_read_and_write_stops_ours_and_survives(bed: Bed) -> None:
    bed.plant([TEAM_A], None)
    ctx = bed.ctx(REPLICATION_ONLY)
    plan = engine.plan(ctx)
    since = len(bed.emu.operations)
    # Right after apply's first read, before mirrorspec has seen the answer.
    meddler = bed.emu.after("DescribeRegistry", writes_rules(bed, [TEAM_A, TEAM_B]))
    result = engine.apply(ctx, plan)
    assert meddler.fired
    assert result.failures == [RULE_FAILURE + CHANGED_MEANWHILE]
    assert bed.puts(since) == ["PutReplicationConfiguration"]  # the other writer's, not ours
    assert bed.rules() == [TEAM_A, TEAM_B]

    _, second = converge(ctx)  # nobody interferes this time
    assert second.empty
    assert bed.rules() == [TEAM_A, TEAM_B, OURS]


def test_a_statement_added_between_our_read_and_write_stops_ours_and_survives(bed: Bed) -> None:
    bed.plant([], policy_text(TEAM_C))
    ctx = bed.ctx(spec_text("vendor", ("us-east-1",)))
    plan = engine.plan(ctx)
    since = len(bed.emu.operations)
    meddler = bed.emu.after("GetRegistryPolicy", writes_policy(bed, policy_text(TEAM_C, TEAM_D)))
    result = engine.apply(ctx, plan)
    assert meddler.fired
    assert result.failures == [STATEMENT_FAILURE + CHANGED_MEANWHILE]
    assert sorted(bed.puts(since)) == ["PutRegistryPolicy", "PutReplicationConfiguration"]  # theirs, ours
    assert bed.statements() == [TEAM_C, TEAM_D]
    assert bed.rules() == [our_rule("vendor", ("us-east-1",))]  # the other document was fine

    _, second = converge(ctx)
    assert second.empty
    assert bed.statements() == [TEAM_C, TEAM_D, OUR_STATEMENT]


def test_a_whole_document_written_right_after_ours_is_reported_and_the_next_apply_converges(
    bed: Bed,
) -> None:
    # A tool that owns "the" replication configuration writes its own, without ours.
    bed.plant([TEAM_A], None)
    ctx = bed.ctx(REPLICATION_ONLY)
    plan = engine.plan(ctx)
    meddler = bed.emu.after("PutReplicationConfiguration", writes_rules(bed, [TEAM_A]))
    result = engine.apply(ctx, plan)
    assert meddler.fired
    assert result.failures == [RULE_FAILURE + CHANGED_AFTER]
    assert bed.rules() == [TEAM_A]

    _, second = converge(ctx)
    assert second.empty
    assert bed.rules() == [TEAM_A, OURS]


def test_a_policy_written_right_after_ours_is_reported_and_the_next_apply_converges(bed: Bed) -> None:
    bed.plant([], policy_text(TEAM_C))
    ctx = bed.ctx(spec_text("vendor", ("us-east-1",)))
    plan = engine.plan(ctx)
    meddler = bed.emu.after("PutRegistryPolicy", writes_policy(bed, policy_text(TEAM_C)))
    result = engine.apply(ctx, plan)
    assert meddler.fired
    assert result.failures == [STATEMENT_FAILURE + CHANGED_AFTER]
    assert bed.statements() == [TEAM_C]

    _, second = converge(ctx)
    assert second.empty
    assert bed.statements() == [TEAM_C, OUR_STATEMENT]


def test_a_policy_written_right_after_we_deleted_it_is_reported(bed: Bed) -> None:
    bed.plant([], policy_text(OUR_STATEMENT))
    ctx = bed.ctx(spec_text("vendor", ("us-east-1",)))
    meddler = bed.emu.after("DeleteRegistryPolicy", writes_policy(bed, policy_text(TEAM_D)))
    delete = Change("delete", ecr_provider.STATEMENT, STATEMENT_ID, OUR_STATEMENT, None)
    with pytest.raises(ProviderConflict) as caught:
        ecr_provider.apply(delete, ctx.spec.target("aws"), ctx)
    assert meddler.fired
    assert str(caught.value) == STATEMENT_FAILURE.split(": ", 2)[2] + CHANGED_AFTER
    assert bed.statements() == [TEAM_D]


def test_a_write_between_our_last_read_and_our_put_is_lost_unseen(bed: Bed) -> None:
    """The window no read can close: ECR has no conditional write, so a change landing after
    our second read and before our put is overwritten, and reading back shows only ours."""
    bed.plant([TEAM_A], None)
    ctx = bed.ctx(REPLICATION_ONLY)
    plan = engine.plan(ctx)
    meddler = bed.emu.after("DescribeRegistry", writes_rules(bed, [TEAM_A, TEAM_B]), nth=2)
    result = engine.apply(ctx, plan)
    assert meddler.fired
    assert result.ok
    assert bed.rules() == [TEAM_A, OURS]


def test_the_cli_exits_1_with_one_line_naming_the_registry_and_document(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bed.plant([TEAM_A], None)
    spec = tmp_path / "spec.yaml"
    spec.write_text(REPLICATION_ONLY)
    monkeypatch.setattr(cli_common, "RunContext", partial(RunContext, client_factories={AWS: bed.aws_client}))
    bed.emu.after("DescribeRegistry", writes_rules(bed, [TEAM_A, TEAM_B]), nth=2)  # 1: plan's
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["apply", str(spec), "--yes"])
    finally:
        logging.getLogger().handlers.clear()  # the CLI's stderr handler
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "Traceback" not in err and "internal error" not in err
    # In-process, moto's server logs its requests to the same stderr: keep our lines.
    assert [line for line in err.splitlines() if "error" in line] == [
        f"error: {RULE_FAILURE}{CHANGED_MEANWHILE}",
        "error: 1 operation(s) failed; the rest was applied",
    ]
    assert bed.rules() == [TEAM_A, TEAM_B]


# --- the emulator's concurrent writer ---------------------------------------------------------


def test_interference_runs_once_after_the_nth_answer_and_before_the_client_reads_it(bed: Bed) -> None:
    ecr = bed.client("ecr", DR_REGION)
    meddler = bed.emu.after("GetRegistryPolicy", writes_policy(bed, policy_text(TEAM_D)), nth=2)
    for _ in range(2):  # error answers count; the second was made before the write
        with pytest.raises(ClientError, match="RegistryPolicyNotFoundException"):
            ecr.get_registry_policy()
    assert meddler.fired
    assert bed.statements() == [TEAM_D]
    writes = bed.emu.operations.count("PutRegistryPolicy")
    ecr.get_registry_policy()
    assert bed.emu.operations.count("PutRegistryPolicy") == writes  # once only


def test_a_failing_interference_is_reported_as_an_emulator_error(emulator: EcrEmulator) -> None:
    emulator.reset()
    ecr = emulator.client("ecr")

    def broken() -> None:
        raise RuntimeError("the test's writer broke")

    emulator.after("DescribeRegistry", broken)
    ecr.describe_registry()
    with pytest.raises(AssertionError, match="interference after DescribeRegistry failed"):
        emulator.check()
    emulator.internal_errors.clear()
