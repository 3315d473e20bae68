"""`python -m envsync.deploy <command>`: bundle, deploy, smoke, rollback (see envsync/deploy/__init__.py).

Exit status: 0 done, 1 failed (the message names why), 2 refused (a rule forbids it: recorded in the
ledger, nothing uploaded or switched) or a bad command line. The last line on stdout is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envsync.deploy import bundle as bundles
from envsync.deploy import notify, release, smoke

log = logging.getLogger("envsync.deploy")

DEFAULT_PROJECT = "envsync"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m envsync.deploy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    b = commands.add_parser("bundle", help="build envsync-<version>.tar.gz from the git-tracked files")
    b.add_argument("--out", type=Path, required=True, help="folder to write the bundle to (e.g. dist)")
    b.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: the current folder)")
    b.add_argument("--version", help="the version (default: the tag on HEAD, else 0.0.0+g<short sha>)")
    b.add_argument("--allow-dirty", action="store_true", help="bundle uncommitted changes of tracked files")

    def bucket_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bucket", required=True, help="the environment's Composer bucket (name, no gs://)")
        p.add_argument("--environment", required=True, choices=release.ENVIRONMENTS)
        p.add_argument("--actor", default=release.default_actor(), help="who (default: GITHUB_ACTOR, else $USER)")
        p.add_argument(
            "--project",
            default=os.environ.get("GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT,
            help="project of the storage client (default: GOOGLE_CLOUD_PROJECT)",
        )
        p.add_argument(
            "--slack-conn-id",
            default=os.environ.get("ENVSYNC_SLACK_CONN_ID") or notify.DEFAULT_CONN_ID,
            help="Airflow connection of the Slack webhook (default: slack_envsync; AIRFLOW_CONN_SLACK_ENVSYNC)",
        )

    d = commands.add_parser("deploy", help="upload a bundle as a release, then switch CURRENT.json to it")
    d.add_argument("--bundle", type=Path, required=True, help="the .tar.gz, or a folder holding exactly one")
    bucket_args(d)
    d.add_argument("--confirm", help="prod only: exactly 'deploy envsync <version> to prod'")
    d.add_argument("--staging-bucket", help="prod only: the staging bucket whose ledger vouches for the digest")
    d.add_argument("--config", type=Path, help="the environment's envsync.yaml, deployed with the release")

    s = commands.add_parser("smoke", help="smoke-test the live release through the Airflow REST API v2")
    bucket_args(s)
    s.add_argument("--api-url", required=True, help="the Airflow web server, e.g. https://...composer.../")
    s.add_argument("--username", default=os.environ.get("ENVSYNC_AIRFLOW_USERNAME"))
    s.add_argument("--password", default=os.environ.get("ENVSYNC_AIRFLOW_PASSWORD"))
    s.add_argument("--token", default=os.environ.get("ENVSYNC_AIRFLOW_TOKEN"), help="a bearer token")
    s.add_argument(
        "--auth",
        choices=smoke.AUTH_MODES,
        help="default: password with --username, token with --token, else google (Composer)",
    )
    s.add_argument("--wait", type=float, default=600.0, help="seconds to wait for Airflow to serve the release")
    s.add_argument("--run-timeout", type=float, default=1800.0, help="seconds the dry run may take")
    s.add_argument("--unpause", action="store_true", help="unpause prod_to_dev_sync if paused (its schedule runs)")

    r = commands.add_parser("rollback", help="switch CURRENT.json back to the previous good release")
    bucket_args(r)
    return parser


def _bucket(args: argparse.Namespace, name: str) -> release.Bucket:
    from envsync.core.clients import storage_client

    return release.Bucket(storage_client(args.project), name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "bundle":
        built = bundles.build(args.out, args.root, version=args.version, allow_dirty=args.allow_dirty)
        return {
            "bundle": str(built.path),
            "version": built.version,
            "digest": built.digest,
            "release": built.release,
            "sha256": built.sha256,
        }
    notifier = notify.slack(args.slack_conn_id)
    target = _bucket(args, args.bucket)
    if args.command == "deploy":
        opened = bundles.read(args.bundle)
        if args.environment != "prod" and (args.confirm or args.staging_bucket):
            raise release.DeployError("--confirm and --staging-bucket are for --environment prod only")
        staging = _bucket(args, args.staging_bucket) if args.staging_bucket else None
        return release.deploy(
            opened,
            target,
            args.environment,
            actor=args.actor,
            confirm=args.confirm,
            staging=staging,
            config_file=args.config,
            notify=notifier,
        )
    if args.command == "smoke":
        auth = args.auth or ("password" if args.username else "token" if args.token else "google")
        api = smoke.AirflowApi(
            args.api_url, auth=auth, username=args.username, password=args.password, token=args.token
        )
        try:
            return smoke.smoke(
                target,
                args.environment,
                api,
                actor=args.actor,
                notify=notifier,
                wait_seconds=args.wait,
                run_timeout=args.run_timeout,
                unpause=args.unpause,
            )
        finally:
            api.close()
    return release.rollback(target, args.environment, actor=args.actor, notify=notifier)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        summary = run(args)
    except release.Refused as error:
        log.error("%s", error)
        return 2
    except (bundles.BundleError, release.DeployError) as error:
        log.error("%s", error)
        return 1
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
