"""`make test-gcp` without a sandbox: one line and success without ENVSYNC_TEST_GCP_PROJECT; with a
project it cannot use, a fast failure with one clear message, before any test (or anything else) runs.

Hermetic: no credentials are reachable (empty HOME, no key file, the GCE metadata server pointed at a
closed local port), and a fake key's token endpoint is a closed local port too.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import sandbox

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOSED = "127.0.0.1:9"  # discard port: nothing listens there, connections are refused at once

pytestmark = pytest.mark.slow


def make_test_gcp(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENVSYNC_", "GOOGLE_", "GCE_", "CLOUDSDK_", "AIRFLOW_CONN_", "MAKE", "MFLAGS"))
    }
    clean.update(
        {
            "HOME": str(tmp_path),
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "GCE_METADATA_HOST": CLOSED,
            "GCE_METADATA_IP": CLOSED,
            **env,
        }
    )
    start = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "test-gcp"],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - start


def test_without_the_variable_it_skips_with_one_line(tmp_path: Path) -> None:
    done, _ = make_test_gcp(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == sandbox.SKIP_MESSAGE + "\n"
    assert done.stdout.startswith("test-gcp skipped: set ENVSYNC_TEST_GCP_PROJECT=<sandbox project id>")
    assert done.stderr == ""


def test_without_credentials_it_fails_fast_naming_project_and_cause(tmp_path: Path) -> None:
    done, seconds = make_test_gcp(tmp_path, ENVSYNC_TEST_GCP_PROJECT="envsync-no-such-project")
    assert done.returncode != 0
    error = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(error) == 1, done.stderr
    assert error[0].startswith(
        "ERROR: test-gcp: cannot use project 'envsync-no-such-project': no Google credentials found"
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS" in error[0] and error[0].endswith("Nothing was created.")
    assert "collected" not in done.stdout and "passed" not in done.stdout  # no test ran
    assert seconds < 60, seconds
    print(f"\n{seconds:.1f} s: {error[0]}")


def test_with_an_unusable_key_it_fails_fast_without_retrying(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_file = tmp_path / "key.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "envsync-no-such-project",
                "private_key_id": "0",
                "private_key": pem,
                "client_email": "envsync-test@envsync-no-such-project.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": f"http://{CLOSED}/token",
            }
        )
    )
    done, seconds = make_test_gcp(
        tmp_path, ENVSYNC_TEST_GCP_PROJECT="envsync-no-such-project", GOOGLE_APPLICATION_CREDENTIALS=str(key_file)
    )
    assert done.returncode != 0
    error = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(error) == 1, done.stderr
    assert error[0].startswith(
        "ERROR: test-gcp: cannot use project 'envsync-no-such-project': Google's token service is unreachable"
    )
    assert error[0].endswith("Nothing was created.")
    assert seconds < 60, seconds


def test_a_malformed_project_id_is_refused(tmp_path: Path) -> None:
    done, _ = make_test_gcp(tmp_path, ENVSYNC_TEST_GCP_PROJECT="Not_A_Project")
    assert done.returncode != 0
    assert "ERROR: test-gcp: ENVSYNC_TEST_GCP_PROJECT='Not_A_Project' is not a GCP project id" in done.stderr
