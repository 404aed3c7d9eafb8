"""Cloud SDKs are extras (`pip install 'mirrorspec[aws]'`, `[azure]`, `[all]`): a run that needs a
missing one stops with one line naming the extra, and a plain install pulls in neither."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A real interpreter where the SDK cannot be imported (`sys.modules[name] = None` makes every
# import of it raise ImportError), asking the run context for a client as the providers do.
BLOCKED = """\
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from mirrorspec.context import RunContext
from mirrorspec.errors import MirrorspecError
from mirrorspec.providers.acr.clients import azure_client
from mirrorspec.providers.ecr.clients import aws_client
from mirrorspec.spec import load_spec

spec = load_spec(sys.argv[2])
ctx = RunContext(spec)
try:
    if sys.argv[3] == "aws":
        aws_client(ctx, "ecr", "eu-west-1")
    else:
        azure_client(ctx, "00000000-0000-0000-0000-000000000000", spec.target("azure-prod"))
except MirrorspecError as exc:
    print(exc)
    sys.exit(1)
"""


@pytest.mark.parametrize(
    ("blocked", "which", "extra"),
    [("boto3", "aws", "aws"), ("azure.identity,azure.mgmt.containerregistry", "azure", "azure")],
)
def test_a_missing_sdk_is_one_line_naming_the_extra(blocked: str, which: str, extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked, str(ROOT / "examples" / "seqera.yaml"), which],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    (line,) = proc.stdout.splitlines()
    assert line.endswith(
        f"is not installed ({blocked.split(',')[0]} cannot be imported): pip install 'mirrorspec[{extra}]'"
    )


def test_the_sdks_are_extras_and_the_test_extra_installs_them_all() -> None:
    # The installed distribution's metadata (what `pip install` reads): `boto3>=1.34; extra == "aws"`.
    by_extra: dict[str, set[str]] = {}
    for requirement in requires("mirrorspec") or []:
        name, _, marker = requirement.partition(";")
        extra = marker.split("extra ==")[-1].strip().strip("'\"") if "extra ==" in marker else ""
        by_extra.setdefault(extra, set()).add(re.split(r"[<>=!~\[ ]", name.strip())[0])
    assert not {n for n in by_extra[""] if n.startswith(("boto", "azure"))}
    assert by_extra["aws"] == {"boto3"}
    assert by_extra["azure"] == {"azure-mgmt-containerregistry", "azure-identity"}
    # hatchling writes a self-reference (`mirrorspec[aws,azure]`) as the requirements it names
    sdks = by_extra["aws"] | by_extra["azure"]
    assert by_extra["all"] == sdks
    assert sdks <= by_extra["test"]
