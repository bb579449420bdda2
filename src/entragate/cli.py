"""The ``entragate`` command line.

Exit codes: 0 success, 1 an operation failed (the error code is printed), 2 usage
or configuration error. Grant commands talk to a running agent through its API when
``agent.listen`` answers and its token is readable, and otherwise work on the
grant store directly (a running agent notices the change within a second).
"""

from __future__ import annotations

import builtins
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from entragate import __version__
from entragate.config import Config, ConfigError, load_config
from entragate.logs import printable, store_label

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

MODE_HELP = (
    "Talks to the running agent through its HTTP API when agent.listen answers and the "
    "API token is readable; otherwise works on the grant store directly (a running agent "
    "picks the change up within a second)."
)


# --------------------------------------------------------------------------- plumbing


class UsageFailure(Exception):
    """Exit 2 with these lines."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _fail(code: int, *lines: str) -> NoReturn:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


def _obj(ctx: click.Context) -> dict[str, Any]:
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {"config_path": None, "json": False, "verbose": False}
    obj: dict[str, Any] = root.obj
    return obj


def load_cli_config(ctx: click.Context, *, require_credentials: bool = False) -> Config:
    """Load the configuration, or exit 2 with one line per problem."""
    try:
        return load_config(_obj(ctx)["config_path"], require_credentials=require_credentials)
    except ConfigError as exc:
        where = f" in {exc.source}" if exc.source else ""
        _fail(2, f"entragate: configuration error{where}:", *(f"  - {p}" for p in exc.problems))


@contextmanager
def operation_errors(*, one_line: bool = False) -> Iterator[None]:
    """Turn the failures an operator can meet into messages and exit codes (no tracebacks)."""
    from entragate.agent_client import AgentError
    from entragate.errors import EntraError
    from entragate.grants import InvalidGrant, StoreError
    from entragate.logs import redact_text
    from entragate.service import InvalidRequest

    def out(code: int, text: str) -> NoReturn:
        if one_line:
            text = " ".join(part.strip() for part in text.splitlines() if part.strip())
        _fail(code, text)

    try:
        yield
    except InvalidGrant as exc:
        out(2, f"entragate: {exc.reason}: {exc.message}")
    except InvalidRequest as exc:
        out(2, f"entragate: {exc.code}: {exc.message}")
    except UsageFailure as exc:
        out(2, "\n".join(f"entragate: {line}" for line in exc.lines))
    except ConfigError as exc:
        out(2, "entragate: configuration error:\n" + "\n".join(f"  - {p}" for p in exc.problems))
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


def _json_wanted(ctx: click.Context, flag: bool) -> bool:
    return flag or bool(_obj(ctx).get("json"))


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


# --------------------------------------------------------------------------- backends


@dataclass
class Backend:
    """Where grant commands go: the running agent (``client``) or the store (``service``)."""

    mode: str  # "agent" or "direct"
    where: str
    client: Any = None
    service: Any = None
    store: Any = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def grant(
        self, acl: str, ip: str, user: str, *, ttl: str | int, note: str, source: str
    ) -> dict[str, Any]:
        if self.client is not None:
            result: dict[str, Any] = self.client.grant(
                acl, ip, user, ttl=ttl, note=note, source=source
            )
            return result
        grant = self.service.grant(acl, ip, user, ttl=ttl, note=note, source=source)
        return dict(grant.to_json())

    def revoke(self, acl: str, ip: str, user: str | None) -> int:
        if self.client is not None:
            return int(self.client.revoke(acl, ip, user)["ended"])
        return int(self.service.revoke(acl, ip, user))

    def flush(self, acl: str) -> int:
        if self.client is not None:
            return int(self.client.flush(acl)["ended"])
        return int(self.service.flush(acl))

    def list(self, acl: str | None) -> builtins.list[dict[str, Any]]:
        if self.client is not None:
            return builtins.list(self.client.list(acl)["grants"])
        return [g.to_json() for g in self.service.list(acl)]


def open_backend(config: Config) -> Backend:
    """The agent when it answers and a token is available, else the store directly."""
    from entragate.agent_client import AgentClient, agent_url
    from entragate.api import find_api_token

    token = find_api_token(config)
    url = agent_url(config)
    client = AgentClient(url, token or "")
    agent_up = client.reachable()  # /healthz needs no token
    if token and agent_up:
        return Backend("agent", url, client=client)
    client.close()
    from entragate.api import default_token_path
    from entragate.grants import StoreError, open_store
    from entragate.service import GrantService

    try:
        store = open_store(config.agent.store)
    except StoreError as exc:
        if agent_up and not token:
            raise StoreError(
                f"{exc}; the agent at {url} is running but its API token "
                f"({default_token_path(config)}) is not readable by this user, so this command "
                "cannot go through it either"
            ) from exc
        raise
    return Backend(
        "direct", store_label(config.agent.store), service=GrantService(config, store), store=store
    )


def _via(backend: Backend) -> str:
    if backend.mode == "agent":
        return f"via the agent at {backend.where}"
    return f"stored directly in {backend.where}"


# --------------------------------------------------------------------------- lazy commands


class LazyGroup(click.Group):
    """Commands written in other modules are imported only when used (or listed in help),
    so a module that is missing or broken does not break the rest of the CLI."""

    lazy: dict[str, tuple[str, str]] = {"doctor": ("entragate.doctor.command", "doctor_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy:
            return command
        module_name, attr = self.lazy[cmd_name]
        try:
            loaded = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            return _unavailable(cmd_name, f"{type(exc).__name__}: {exc}")
        if not isinstance(loaded, click.Command):
            return _unavailable(cmd_name, f"{module_name}.{attr} is not a click command")
        self.add_command(loaded, cmd_name)
        return loaded


def _unavailable(name: str, why: str) -> click.Command:
    def callback() -> None:
        _fail(1, f"entragate: the {name} command is not available in this installation ({why})")

    return click.Command(
        name, callback=callback, help=f"(unavailable: {why})", short_help="(unavailable)"
    )


def _import(module: str, attr: str, command: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        _fail(
            1,
            f"entragate: the {command} command is not available in this installation "
            f"({type(exc).__name__}: {exc})",
        )


# --------------------------------------------------------------------------- group


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Configuration file (default: $ENTRAGATE_CONFIG, /etc/entragate/config.toml, "
    "then ./entragate.toml). Every key can be set as ENTRAGATE_<KEY>.",
)
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Print data as JSON (same as each command's --json).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show informational log events on stderr.")
@click.version_option(__version__, prog_name="entragate")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, json_output: bool, verbose: bool) -> None:
    """Just-in-time IP allowlisting for Microsoft Entra ID named locations.

    Grant an address to a user for a while; entragate keeps the ACL's IP named
    location equal to the granted addresses and removes each when its grant ends.

    Example:

    \b
      entragate --config /etc/entragate/config.toml grant 81.2.69.142 --acl staff --user alice --ttl 8h
    """
    ctx.obj = {"config_path": config_path, "json": json_output, "verbose": verbose}
    from entragate.logs import configure_logging

    configure_logging(level=logging.INFO if verbose else logging.WARNING)


json_option = click.option("--json", "json_flag", is_flag=True, help="Print the result as JSON.")


# --------------------------------------------------------------------------- grant commands


@main.command(epilog=MODE_HELP)
@click.argument("ip")
@click.option("--acl", required=True, help="Access list ([acl.NAME] in the configuration).")
@click.option("--user", required=True, help="Who holds the grant.")
@click.option(
    "--ttl",
    required=True,
    help="How long: seconds or a duration such as 90m, 8h, 7d (at most agent.max_ttl).",
)
@click.option("--note", default="", help="Free text stored with the grant.")
@json_option
@click.pass_context
def grant(
    ctx: click.Context, ip: str, acl: str, user: str, ttl: str, note: str, json_flag: bool
) -> None:
    """Grant IP (an address or CIDR) to a user in an ACL for a while.

    Granting the same address to the same user again sets its new expiry.

    Example:

    \b
      entragate grant 81.2.69.142 --acl staff --user alice --ttl 8h --note "on call"
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        result = backend.grant(acl, ip, user, ttl=ttl, note=note, source="cli")
    if _json_wanted(ctx, json_flag):
        _print_json(result)
    else:
        click.echo(
            f"granted {result['cidr']} to {result['user']} in {result['acl']} until "
            f"{result['expires_at']} ({_via(backend)})"
        )


@main.command(epilog=MODE_HELP)
@click.argument("ip")
@click.option("--acl", required=True, help="Access list.")
@click.option("--user", default=None, help="End only this user's grant (default: every holder's).")
@json_option
@click.pass_context
def revoke(ctx: click.Context, ip: str, acl: str, user: str | None, json_flag: bool) -> None:
    """End the grants of IP in an ACL (of one user, or of every holder).

    Revoking an address that holds no grant succeeds and ends nothing.

    Example:

    \b
      entragate revoke 81.2.69.142 --acl staff --user alice
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        ended = backend.revoke(acl, ip, user)
    if _json_wanted(ctx, json_flag):
        _print_json({"ended": ended})
    else:
        click.echo(
            f"ended {ended} grant{'s' if ended != 1 else ''} of {ip} in {acl} ({_via(backend)})"
        )


@main.command(epilog=MODE_HELP)
@click.option("--acl", required=True, help="Access list to empty.")
@json_option
@click.pass_context
def flush(ctx: click.Context, acl: str, json_flag: bool) -> None:
    """End every grant of an ACL.

    Example:

    \b
      entragate flush --acl staff
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        ended = backend.flush(acl)
    if _json_wanted(ctx, json_flag):
        _print_json({"ended": ended})
    else:
        click.echo(f"ended {ended} grant{'s' if ended != 1 else ''} in {acl} ({_via(backend)})")


@main.command("list", epilog=MODE_HELP)
@click.option("--acl", default=None, help="Only this access list.")
@json_option
@click.pass_context
def list_(ctx: click.Context, acl: str | None, json_flag: bool) -> None:
    """List active grants.

    Example:

    \b
      entragate list --acl staff --json
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        grants = backend.list(acl)
    if _json_wanted(ctx, json_flag):
        _print_json({"grants": grants})
        return
    _print_grants(grants)


def _print_grants(grants: builtins.list[dict[str, Any]]) -> None:
    if not grants:
        click.echo("no active grants")
        return
    headers = ("ACL", "CIDR", "USER", "EXPIRES", "SOURCE", "NOTE")
    rows = [
        tuple(
            printable(str(v))
            for v in (
                g["acl"],
                g["cidr"],
                g["user"],
                g["expires_at"],
                g.get("source", ""),
                g.get("note", ""),
            )
        )
        for g in grants
    ]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, str(row[-1])]).rstrip())


@main.command(
    epilog="Through the agent it shows, per ACL and named location, the ranges desired "
    "and applied, the last sync, the last error code and any throttling. Without a "
    "running agent it shows the stored grants only."
)
@json_option
@click.pass_context
def status(ctx: click.Context, json_flag: bool) -> None:
    """Show the agent's sync state (or, without an agent, the stored grants).

    Example:

    \b
      entragate status --json
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        if backend.mode == "agent":
            data: dict[str, Any] = {
                "mode": "agent",
                "agent": backend.where,
                **backend.client.status(),
            }
        else:
            grants = backend.list(None)
            data = {
                "mode": "direct",
                "store": backend.where,
                "note": "no running agent answered at "
                + _agent_where(config)
                + "; showing stored grants only",
                "acls": {
                    name: {
                        "location": acl.location,
                        "grants": [g for g in grants if g["acl"] == name],
                    }
                    for name, acl in config.acls.items()
                },
            }
    if _json_wanted(ctx, json_flag):
        _print_json(data)
        return
    if data["mode"] == "direct":
        click.echo(data["note"])
        for name, entry in data["acls"].items():
            click.echo(f"{name} ({entry['location']}): {len(entry['grants'])} active grant(s)")
            for g in entry["grants"]:
                click.echo(
                    printable(f"  {g['cidr']}  {g['user']}  until {g['expires_at']}")
                )
        if not data["acls"]:
            click.echo("no ACLs configured")
        return
    click.echo(f"agent at {data['agent']}")
    _print_tree({k: v for k, v in data.items() if k not in ("mode", "agent")}, 0)


def _agent_where(config: Config) -> str:
    from entragate.agent_client import agent_url

    return agent_url(config)


def _print_tree(value: Any, depth: int) -> None:
    pad = "  " * depth
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | builtins.list) and item:
                click.echo(f"{pad}{printable(str(key))}:")
                _print_tree(item, depth + 1)
            else:
                click.echo(f"{pad}{printable(str(key))}: {_scalar(item)}")
    elif isinstance(value, builtins.list):
        for item in value:
            if isinstance(item, dict):
                first = True
                for key, sub in item.items():
                    lead = "- " if first else "  "
                    first = False
                    if isinstance(sub, dict | builtins.list) and sub:
                        click.echo(f"{pad}{lead}{key}:")
                        _print_tree(sub, depth + 2)
                    else:
                        click.echo(f"{pad}{lead}{key}: {_scalar(sub)}")
            else:
                click.echo(f"{pad}- {_scalar(item)}")


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | builtins.list):
        return "none" if not value else json.dumps(value)
    return printable(str(value))


# --------------------------------------------------------------------------- Knocknoc


@main.command(
    epilog="Knocknoc runs a Custom Script as SCRIPT ACTION ACL [IP]; point it at a two-line "
    'wrapper such as:  #!/bin/sh  exec /usr/local/bin/entragate script "$@".  '
    "Grants are held by the user named in $KNOCKNOC_USER (default: knocknoc) with source "
    "'knocknoc'; 'add' uses agent.script_ttl as a safety expiry in case a 'del' never "
    "comes; 'flush' ends that user's grants in the ACL and leaves grants made by others. "
    + MODE_HELP
)
@click.argument("action", type=click.Choice(["add", "del", "flush"]))
@click.argument("acl")
@click.argument("ip", required=False)
@click.pass_context
def script(ctx: click.Context, action: str, acl: str, ip: str | None) -> None:
    """The Knocknoc Custom Script contract: add, del or flush an address in an ACL.

    Idempotent: adding an address already granted renews it, deleting one that is
    not granted succeeds. Exit 0 on success; otherwise non-zero with one line on stderr.

    Example:

    \b
      entragate script add staff 81.2.69.142
      entragate script del staff 81.2.69.142
      entragate script flush staff
    """
    try:
        config = load_config(_obj(ctx)["config_path"], require_credentials=False)
    except ConfigError as exc:
        _fail(2, "entragate: configuration error: " + "; ".join(exc.problems))
    user = os.environ.get("KNOCKNOC_USER", "").strip() or "knocknoc"
    with operation_errors(one_line=True):
        if action in ("add", "del") and not ip:
            raise UsageFailure(f"script {action} needs an IP address: script {action} ACL IP")
        from entragate.service import canonical_user

        user = canonical_user(user)  # as stored, so flush finds this user's grants
        with open_backend(config) as backend:
            if action == "add":
                assert ip is not None
                ttl = min(config.agent.script_ttl, config.agent.max_ttl)
                result = backend.grant(acl, ip, user, ttl=ttl, note="", source="knocknoc")
                click.echo(f"ok: {result['cidr']} granted in {acl} until {result['expires_at']}")
            elif action == "del":
                assert ip is not None
                ended = backend.revoke(acl, ip, user)
                click.echo(f"ok: {ip} removed from {acl} ({ended} grant(s) ended)")
            else:
                ended = 0
                for g in backend.list(acl):
                    if g["user"] == user:
                        ended += backend.revoke(acl, g["cidr"], user)
                click.echo(f"ok: {acl} flushed ({ended} grant(s) of {user} ended)")


# --------------------------------------------------------------------------- explain


@main.command()
@click.argument("code")
def explain(code: str) -> None:
    """Explain an error code: what it means, common causes, how to fix it.

    Example:

    \b
      entragate explain ENTRA003
    """
    from entragate.errors.codes import Code, explain_text

    text = explain_text(code)
    if text is None:
        known = "\n".join(f"  {c}  {c.title}" for c in Code)
        _fail(2, f"entragate: unknown error code {code!r}; the known codes are:\n{known}")
    click.echo(text.rstrip("\n"))


# --------------------------------------------------------------------------- commands of other modules


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the agent: the local HTTP API, the paced writer and the expiry scheduler.

    Serves until SIGTERM or Ctrl-C.

    Example:

    \b
      entragate --config /etc/entragate/config.toml run
    """
    config = load_cli_config(ctx, require_credentials=True)
    run_agent: Callable[[Config], int | None] = _import("entragate.agent", "run_agent", "run")
    with operation_errors():
        try:
            code = run_agent(config)
        except OSError as exc:
            _fail(1, _os_error_text(exc, config))
    sys.exit(int(code or 0))


def _os_error_text(exc: OSError, config: Config) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return (
            f"entragate: cannot listen on {config.agent.listen}: the address is in use; is "
            "another agent already running? (ss -ltnp shows who listens) Stop it, or set "
            "agent.listen to a free port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename is None:
        return (
            f"entragate: cannot listen on {config.agent.listen}: permission denied; use a "
            "port above 1023 in agent.listen"
        )
    where = f" {exc.filename}" if exc.filename else ""
    return f"entragate: cannot start the agent:{where}: {exc.strerror or exc}"


@main.command()
@click.option("--once", is_flag=True, help="Reconcile every ACL now and exit (required).")
@click.option("--dry-run", is_flag=True, help="Only print the plan; write nothing.")
@json_option
@click.pass_context
def sync(ctx: click.Context, once: bool, dry_run: bool, json_flag: bool) -> None:
    """Reconcile every ACL's named locations with the granted ranges once.

    Example:

    \b
      entragate sync --once --dry-run
    """
    if not once:
        _fail(2, "entragate: sync runs once (sync --once); `entragate run` keeps syncing")
    config = load_cli_config(ctx, require_credentials=True)
    sync_once: Callable[..., dict[str, Any]] = _import("entragate.agent", "sync_once", "sync")
    with operation_errors():
        result = sync_once(config, dry_run=dry_run)
    if _json_wanted(ctx, json_flag):
        _print_json(result)
        return
    _print_plan(result, dry_run)


def _print_plan(result: dict[str, Any], dry_run: bool) -> None:
    plan = result.get("plan", result)
    click.echo("plan (dry run: nothing written):" if dry_run else "plan:")
    if not isinstance(plan, dict) or not plan:
        click.echo("  nothing configured")
    for acl, entries in plan.items() if isinstance(plan, dict) else []:
        click.echo(f"  {acl}:")
        for entry in entries if isinstance(entries, builtins.list) else [entries]:
            if not isinstance(entry, dict):
                click.echo(f"    {entry}")
                continue
            add, remove = entry.get("add") or [], entry.get("remove") or []
            state = "" if entry.get("exists", True) else " (to be created)"
            if not add and not remove and not entry.get("write"):
                click.echo(f"    {entry.get('location')}{state}: in sync")
                continue
            click.echo(f"    {entry.get('location')}{state}: +{len(add)} -{len(remove)}")
            for r in add:
                click.echo(f"      + {r}")
            for r in remove:
                click.echo(f"      - {r}")
    if not dry_run and "writes" in result:
        click.echo(f"writes: {result['writes']}")


@main.command()
@click.option(
    "--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to serve on."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the emulator keeps its root CA (default: the user's entragate app directory).",
)
@click.option(
    "--rate",
    type=float,
    default=1.0,
    show_default=True,
    help="Requests per second per tenant (0: off).",
)
def emulator(listen: str, state_dir: Path | None, rate: float) -> None:
    """Run the emulated Entra tenant (token endpoint + Graph named locations) in the foreground.

    Prints the tenant, app credentials, CA bundle and a configuration to point the
    agent at it.

    Example:

    \b
      entragate emulator --listen 127.0.0.1:8443 --state-dir ./emulator-state
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        _fail(2, f"entragate: --listen {listen!r} is not HOST:PORT")
    host = host.strip("[]")
    state = state_dir or Path(click.get_app_dir("entragate")) / "emulator"
    state.mkdir(parents=True, exist_ok=True)
    serve_forever = _import("entragate.emulator", "serve_forever", "emulator")
    try:
        serve_forever(host, int(port_text), state, rate if rate > 0 else None, click.echo)
    except OSError as exc:
        _fail(1, f"entragate: cannot serve the emulator on {listen}: {exc.strerror or exc}")


@main.command()
def demo() -> None:
    """Show entragate end to end against the emulator (no Microsoft tenant needed).

    Starts the emulator and an agent on a temporary store, grants and expires a few
    addresses, shows the named location change, then shows `doctor` diagnosing an
    emulated TLS-inspection proxy.

    Example:

    \b
      entragate demo
    """
    run_demo: Callable[[], int | None] = _import("entragate.demo", "run_demo", "demo")
    sys.exit(int(run_demo() or 0))


if __name__ == "__main__":  # pragma: no cover
    main()
