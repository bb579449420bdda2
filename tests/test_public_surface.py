"""The public surface is pinned: a name added to or dropped from it is a decision."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import entragate


def test_exported_members() -> None:
    assert sorted(entragate.__all__) == [
        "Code",
        "Config",
        "ConfigError",
        "EntraError",
        "__version__",
        "load_config",
    ]
    for name in entragate.__all__:
        assert getattr(entragate, name) is not None, name
    assert entragate.Code.ENTRA003 == "ENTRA003"
    assert issubclass(entragate.EntraError, Exception)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        entragate.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("entragate.no_such_name resolved")


def test_console_script_is_the_cli_group() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["entragate"] == "entragate.cli:main"
    from entragate.cli import main

    assert main.name == "main"
    assert {"grant", "revoke", "flush", "list", "status", "sync", "run", "doctor", "explain",
            "script", "emulator", "demo"} <= set(main.list_commands(None))  # type: ignore[arg-type]


def test_import_and_help_load_no_heavy_module() -> None:
    heavy = ["requests", "msal", "cryptography", "psycopg", "fastapi", "uvicorn", "structlog", "jwt"]
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from entragate.cli import main\n"
        "for args in (['--help'], ['explain', 'ENTRA003'], ['script', '--help']):\n"
        "    result = CliRunner().invoke(main, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
