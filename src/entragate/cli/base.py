"""Plumbing shared by every command: configuration loading, exit codes, JSON output,
and the lazy loading of commands whose modules are heavy (docs/design.md#cli).

Exit codes: 0 success, 1 an operation failed (the error code is printed), 2 usage
or configuration error.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from entragate.config import Config, ConfigError, load_config

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

MODE_HELP = (
    "Talks to the running agent through its HTTP API when agent.listen answers and the "
    "API token is readable; otherwise works on the grant store directly (a running agent "
    "picks the change up within a second)."
)

json_option = click.option("--json", "json_flag", is_flag=True, help="Print the result as JSON.")

# Listed by `entragate --help` without importing the doctor (LazyGroup below).
DOCTOR_SHORT_HELP = "Find the root cause of a failure to reach Microsoft."


def config_option(help_text: str) -> Any:
    """``--config PATH``, for the group and for commands that also take it."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        metavar="PATH",
        help=help_text,
    )


class UsageFailure(Exception):
    """Exit 2 with these lines."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


_CODE_WORD = re.compile(r"^entragate: ([a-z_]+|ENTRA\d{3}): ")
_ENTRA_CODE = re.compile(r"\bENTRA\d{3}\b")


def fail(code: int, *lines: str) -> NoReturn:
    """Exit ``code`` with ``lines`` on stderr; under ``--json`` also with the API's error
    shape ``{"error": {"code", "message"}}`` on stdout, so a program reads one JSON
    document whatever happened (docs/design.md#cli)."""
    if _json_errors_wanted():
        print_json({"error": error_body(code, lines)})
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


def error_body(code: int, lines: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The code word and message of an error printed as ``entragate: WORD: message``."""
    text = "\n".join(line.removeprefix("entragate: ") for line in lines)
    first = lines[0] if lines else ""
    match = _CODE_WORD.match(first)
    if match:
        return {"code": match.group(1), "message": text[len(match.group(1)) + 2 :]}
    if first.startswith("entragate: configuration error"):
        return {"code": "invalid_configuration", "message": text}
    entra = _ENTRA_CODE.search(text)
    word = entra.group(0) if entra else ("usage" if code == 2 else "failed")
    return {"code": word, "message": text}


def _json_errors_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    if any(ctx.params.get(name) for name in ("json_flag", "as_json")):
        return True
    root = ctx.find_root()
    return isinstance(root.obj, dict) and bool(root.obj.get("json"))


def cli_state(ctx: click.Context) -> dict[str, Any]:
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {"config_path": None, "json": False, "verbose": False}
    obj: dict[str, Any] = root.obj
    return obj


def load_cli_config(ctx: click.Context, *, require_credentials: bool = False) -> Config:
    """Load the configuration, or exit 2 with one line per problem."""
    try:
        return load_config(cli_state(ctx)["config_path"], require_credentials=require_credentials)
    except ConfigError as exc:
        fail(2, *exc.report())


@contextmanager
def operation_errors(*, one_line: bool = False) -> Iterator[None]:
    """Turn the failures an operator can meet into messages and exit codes (no tracebacks)."""
    from entragate.agent_client import AgentError
    from entragate.errors import EntraError
    from entragate.grants import InvalidGrant, StoreError
    from entragate.logs import redact_text

    def out(code: int, text: str) -> NoReturn:
        if one_line:
            text = " ".join(part.strip() for part in text.splitlines() if part.strip())
        fail(code, text)

    try:
        yield
    except InvalidGrant as exc:  # refused by the grant model's parser or by policy
        out(2, f"entragate: {exc.reason}: {exc.message}")
    except UsageFailure as exc:
        out(2, "\n".join(f"entragate: {line}" for line in exc.lines))
    except ConfigError as exc:
        out(2, "\n".join(exc.report()))
    except AgentError as exc:
        if exc.code == "unauthorized":
            out(
                2,
                "entragate: unauthorized: the agent refused the API token; check "
                "agent.api_token / agent.api_token_file",
            )
        out(2 if exc.is_input_error else 1, f"entragate: {exc.code}: {exc.message}")
    except EntraError as exc:
        out(1, f"entragate: {exc.message}")
    except StoreError as exc:
        out(
            1,
            f"entragate: store_unavailable: the grant store cannot be used: {redact_text(str(exc))}"
            "\n  next: run this as the user that owns the store (the agent's user, e.g. with "
            "sudo -u), check the file and its directory, or start the agent (entragate run) "
            "so commands go through its API",
        )


def json_wanted(ctx: click.Context, flag: bool) -> bool:
    return flag or bool(cli_state(ctx).get("json"))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


class LazyGroup(click.Group):
    """Commands written in other modules are imported only when used, so a module that
    is missing or broken does not break the rest of the CLI, and ``--help`` lists them
    from their one-line help here without importing them."""

    lazy: dict[str, tuple[str, str, str]] = {
        "doctor": (
            "entragate.doctor.command",
            "doctor_command",
            DOCTOR_SHORT_HELP,
        )
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is not None:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
            elif name in self.lazy:
                rows.append((name, self.lazy[name][2]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy:
            return command
        module_name, attr, _ = self.lazy[cmd_name]
        try:
            loaded = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            return unavailable_command(cmd_name, f"{type(exc).__name__}: {exc}")
        if not isinstance(loaded, click.Command):
            return unavailable_command(cmd_name, f"{module_name}.{attr} is not a click command")
        self.add_command(loaded, cmd_name)
        return loaded


def unavailable_command(name: str, why: str) -> click.Command:
    def callback() -> None:
        fail(1, f"entragate: the {name} command is not available in this installation ({why})")

    return click.Command(
        name, callback=callback, help=f"(unavailable: {why})", short_help="(unavailable)"
    )


def import_command(module: str, attr: str, command: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        fail(
            1,
            f"entragate: the {command} command is not available in this installation "
            f"({type(exc).__name__}: {exc})",
        )
