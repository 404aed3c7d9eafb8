"""The real `terraform` and HashiCorp's AWS provider, offline, for tests.

Nothing is downloaded: the provider comes from a local filesystem mirror (Terraform's
"unpacked" layout, `registry.terraform.io/hashicorp/aws/<version>/<os>_<arch>/terraform-provider-aws_*`),
named by `MIRRORSPEC_TF_PLUGIN_MIRROR` or found in one of the conventional plugin directories
(https://developer.hashicorp.com/terraform/cli/config/config-file#implied-local-mirror-directories).
A CLI configuration written in the test's temporary directory installs only from that mirror
(`direct { exclude = ["*/*/*"] }`: no registry is ever asked), and `CHECKPOINT_DISABLE=1` stops
the version check; `TF_CLI_CONFIG_FILE` keeps the user's own `~/.terraformrc` out.

`terraform init` runs once per `Terraform` (a module-scoped fixture): every working directory
shares its data directory (`TF_DATA_DIR`, where init links the provider) and lock file, so a
new configuration that needs only `hashicorp/aws` is ready without another init.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

__all__ = ["MIRROR_ENV", "Terraform", "find_aws_mirror", "skip_reason"]

MIRROR_ENV = "MIRRORSPEC_TF_PLUGIN_MIRROR"
# Terraform's implied local mirror directories, and any directory directly under /opt (the
# FHS place for add-on software, where images often unpack a provider mirror).
_CONVENTIONAL = (
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _platform() -> str:
    return f"{platform.system().lower()}_{_ARCH.get(platform.machine().lower(), platform.machine().lower())}"


def find_aws_mirror() -> Path | None:
    """The first mirror directory holding an AWS provider binary for this platform."""
    named = os.environ.get(MIRROR_ENV)
    opt = sorted(str(path) for path in Path("/opt").glob("*") if path.is_dir())
    candidates = [named] if named else [*_CONVENTIONAL, *opt]
    for candidate in candidates:
        root = Path(candidate).expanduser()
        found = root.glob(f"registry.terraform.io/hashicorp/aws/*/{_platform()}/terraform-provider-aws_*")
        if any(path.is_file() and os.access(path, os.X_OK) for path in found):
            return root
    return None


def skip_reason() -> str | None:
    if shutil.which("terraform") is None:
        return "terraform is not installed (it is on CI)"
    if find_aws_mirror() is None:
        where = os.environ.get(MIRROR_ENV) or ", ".join([*_CONVENTIONAL, "/opt/*"])
        return (
            f"no hashicorp/aws provider for {_platform()} in a filesystem mirror ({where}); "
            f"set {MIRROR_ENV} to a directory in Terraform's unpacked mirror layout"
        )
    return None


class Terraform:
    """`terraform` with the AWS provider from the local mirror, initialised once."""

    def __init__(self, root: Path) -> None:
        mirror = find_aws_mirror()
        assert mirror is not None, skip_reason()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        config = root / "cli.tfrc"
        config.write_text(
            "provider_installation {\n"
            f"  filesystem_mirror {{\n    path = {json.dumps(str(mirror))}\n  }}\n"
            '  direct {\n    exclude = ["*/*/*"]\n  }\n'
            "}\n"
        )
        self.env = {
            # The caller's AWS settings (keys, profile, AWS_ENDPOINT_URL_*) stay out: a test
            # names its endpoints and credentials itself.
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "TF_CLI_CONFIG_FILE": str(config),
            "TF_DATA_DIR": str(root / "data"),
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            # The provider is a 700 MB Go binary that builds its whole schema in every process
            # (several per command); collecting garbage less often cut that CPU time by a
            # quarter here (terraform validate: 2.0 → 1.5 s user) for ~40 MB more memory.
            "GOGC": "400",
        }
        seed = root / "init"
        seed.mkdir()
        (seed / "main.tf.json").write_text(
            json.dumps({"terraform": {"required_providers": {"aws": {"source": "hashicorp/aws"}}}})
        )
        init = self.run("init", "-backend=false", cwd=seed)
        assert init.returncode == 0, init.stdout + init.stderr
        self.lock = (seed / ".terraform.lock.hcl").read_text()
        version = self.run("version", "-json", cwd=seed, plain=False)
        self.versions = json.loads(version.stdout)

    def workdir(self, name: str) -> Path:
        """A fresh working directory that shares the initialised providers."""
        path = self.root / name
        path.mkdir()
        (path / ".terraform.lock.hcl").write_text(self.lock)
        return path

    def run(
        self,
        *args: str,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
        plain: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """`terraform <args> -no-color` (`plain=False` for commands without that flag); `env`
        adds variables (TF_VAR_... for secrets, never on the command line)."""
        argv = ["terraform", *args, *(["-no-color"] if plain else [])]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=False,
        )


def needs_aws_provider() -> pytest.MarkDecorator:
    reason = skip_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")
