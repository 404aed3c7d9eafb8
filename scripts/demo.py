"""`make demo`: mirrorspec's main job, end to end, on two real local registries.

Starts an upstream registry (plain HTTP, 127.0.0.1:15000) and a destination registry (TLS +
htpasswd, 127.0.0.1:15001), seeds the upstream with Helm-style charts (`platform` 1.0.0,
1.2.0, 1.5.3, 2.0.0, 2.1.0-rc1, each depending on a `redis` chart) and an image, then runs
the CLI exactly as a user would on examples/local-demo.yaml:

    mirrorspec plan, mirrorspec apply --yes, mirrorspec audit --content

and stops both registries, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from testbed import push_chart, push_image, start_registry  # noqa: E402

SPEC = ROOT / "examples" / "local-demo.yaml"
WORK = ROOT / ".demo"
UPSTREAM_PORT, DESTINATION_PORT = 15000, 15001


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    password = secrets.token_urlsafe(18)
    env = {**os.environ, "DEMO_REGISTRY_PASSWORD": password}
    mirrorspec = str(Path(sys.executable).with_name("mirrorspec"))
    with (
        start_registry(WORK / "upstream", port=UPSTREAM_PORT) as upstream,
        start_registry(WORK / "mine", port=DESTINATION_PORT, tls=True, users={"demo": password}) as mine,
    ):
        assert mine.ca_file is not None
        shutil.copyfile(mine.ca_file, WORK / "ca.crt")
        _banner(f"seeding the upstream registry {upstream.host}")
        redis = [{"name": "redis", "version": "~18.0.0", "repository": f"oci://{upstream.host}/charts"}]
        for version in ("17.9.0", "18.0.1", "18.0.4", "19.0.0"):
            push_chart(upstream, "charts/redis", version)
        for version in ("1.0.0", "1.2.0", "1.5.3", "2.0.0", "2.1.0-rc1"):
            push_chart(upstream, "charts/platform", version, dependencies=redis)
        for tag in ("v1.2.0", "v1.5.3", "v2.0.0"):
            push_image(upstream, "images/platform-backend", tag)
        print("charts/platform 1.0.0 1.2.0 1.5.3 2.0.0 2.1.0-rc1 (depends on redis ~18.0.0)")
        print("charts/redis 17.9.0 18.0.1 18.0.4 19.0.0; images/platform-backend v1.2.0 v1.5.3 v2.0.0")

        steps = [
            ("plan: what would be copied", ["plan", str(SPEC)]),
            ("apply: copy exactly that plan", ["apply", str(SPEC), "--yes"]),
            (
                "audit --content: is every wanted tag there, with the upstream digest?",
                ["audit", str(SPEC), "--content"],
            ),
            ("plan again: nothing left to do", ["plan", str(SPEC), "--detailed-exitcode"]),
        ]
        for title, args in steps:
            _banner(
                f"mirrorspec {' '.join(a if a != str(SPEC) else 'examples/local-demo.yaml' for a in args)}"
            )
            print(f"# {title}", flush=True)
            code = subprocess.run([mirrorspec, *args], env=env, check=False).returncode
            if code != 0:
                print(f"demo failed: mirrorspec {args[0]} exited {code}", file=sys.stderr)
                return 1
    _banner("done: registries stopped")
    return 0


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
