"""``pip install .`` gives a vault that runs without the source checkout (issue 10, item 6).

The wheel is built (``pip wheel``, as ``pip install .`` builds it) from a copy of exactly
what pyproject.toml packages, installed non-editable into a directory of its own, and the
vault is started from there under gunicorn, from a working directory outside the checkout:
its code, templates (the top-level templates/ of the source), static files and migrations
must all come from the wheel. The dependencies are the test environment's (the same
pyproject.toml declared them), so nothing is downloaded but the build backend.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

SOURCE = Path(__file__).resolve().parents[1]
PACKAGED = ("vault", "consent", "connectors", "templates")


def _files(root: Path) -> set[str]:
    """Every file under ``root`` (relative, with /), byte-code left out."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(SOURCE / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGED:
        shutil.copytree(SOURCE / name, source / name, ignore=ignore)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [path] = work.glob("cmr_vault-*.whl")
    return path


def test_the_wheel_carries_code_templates_static_files_and_migrations(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"vault/templates/{name}" for name in _files(SOURCE / "templates")}
    expected |= {f"vault/static/{name}" for name in _files(SOURCE / "vault" / "static")}
    expected |= {f"vault/migrations/{name}" for name in _files(SOURCE / "vault" / "migrations")}
    for package in ("vault", "consent", "connectors"):  # every module: no package forgotten
        expected |= {
            f"{package}/{name}" for name in _files(SOURCE / package) if name.endswith(".py")
        }
    assert {"vault/migrations/alembic.ini", "vault/templates/base.html"} <= expected
    assert expected - names == set()
    # Nothing of the checkout beyond the packages, and templates/ not at the top level.
    assert {name.split("/")[0] for name in names} == {
        "vault",
        "consent",
        "connectors",
        wheel.name.split("-py3")[0] + ".dist-info",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def _serving(env: dict[str, str], cwd: Path) -> Iterator[int]:
    port = _free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-w", "1", "-b", f"127.0.0.1:{port}", "vault:create_app()"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited:\n{process.stdout.read() if process.stdout else ''}")
            with contextlib.suppress(OSError):
                _get(port, "/")
                break
            if time.monotonic() > deadline:
                pytest.fail("the installed vault did not answer within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_installed_vault_migrates_and_serves_without_the_checkout(wheel: Path, tmp_path):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    installed = subprocess.run(
        [*install, "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    run = tmp_path / "run"
    run.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Ahead of the editable install of the checkout (a finder consulted last).
        "PYTHONPATH": str(site),
        "VAULT_ENV": "development",
        "VAULT_DATABASE_URL": f"sqlite:///{tmp_path / 'vault.db'}",
        "VAULT_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "VAULT_MAIL_DIR": str(tmp_path / "mail"),
    }

    def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            cwd=run,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    where = python(
        "import json, vault; print(json.dumps([vault.__file__, str(vault.templates_dir())]))"
    )
    assert where.returncode == 0, where.stderr
    module, templates = (Path(p) for p in json.loads(where.stdout))
    assert module.is_relative_to(site) and templates == site / "vault" / "templates"

    upgrade = python(
        "import sys; from vault.cli import main; sys.argv[0] = 'vault'; main()", "db", "upgrade"
    )
    assert upgrade.returncode == 0, upgrade.stderr

    with _serving(env, run) as port:
        status, kind, body = _get(port, "/")
        assert status == 200 and kind.startswith("text/html")
        assert b"/static/vault.css" in body  # rendered from the packaged base.html
        status, kind, body = _get(port, "/static/vault.css")
        assert status == 200 and kind.startswith("text/css") and body
        status, kind, body = _get(port, "/login")
        assert status == 200 and b'name="password"' in body
        status, kind, body = _get(port, "/.well-known/openid-configuration")
        assert status == 200 and kind == "application/json"
        assert json.loads(body)["token_endpoint"].endswith("/oauth/token")
