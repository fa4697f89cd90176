"""The import contracts of .importlinter hold for the code, and each one catches a breach.

`make lint` runs lint-imports in CI; these tests prove the contracts are not vacuous: a copy
of the packages with one forbidden import staged breaks exactly the contract that names it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("vault", "consent", "connectors")


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(where / ".importlinter"), "--no-cache"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_code_keeps_every_import_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("consent/engine.py", "import vault.models", "leaf libraries"),
        ("consent/ledger.py", "import flask", "leaf libraries"),
        ("connectors/email.py", "from vault import mail", "leaf libraries"),
        ("vault/oauth/models.py", "import vault.oauth.operations", "views and CLI above"),
        ("vault/profile/operations.py", "import vault.profile.views", "views and CLI above"),
        ("vault/web/views.py", "import vault.accounts.views", "another feature's views"),
        ("vault/consents/views.py", "import vault.api.consent_views", "another feature's views"),
    ],
)
def test_a_staged_breach_breaks_its_contract(tmp_path, module, line, contract):
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with (tmp_path / module).open("a") as handle:
        handle.write(f"\n{line}  # staged breach\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    # The contract names wrap over two lines in the report; the breach section names it whole.
    assert broken, result.stdout
    assert contract in result.stdout.split("Broken contracts", 1)[1], result.stdout
