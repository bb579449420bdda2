"""``entragate doctor``: the click command (registered lazily by entragate.cli)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from entragate.cli.base import DOCTOR_SHORT_HELP, config_option
from entragate.config import Config, ConfigError, load_config
from entragate.doctor.runner import Report, config_error_report, run_doctor

_HELP = """Diagnose the path to Microsoft with the agent's exact configuration.

Checks, in order: config, proxy, dns, tcp, tls, clock, truststore, token,
permissions, locations, policies, throttling. `policies` warns when no enabled
Conditional Access policy uses a managed location (grants would change nothing).
When TLS verification fails it captures
the chain the server presented (without trusting it) and names the cause:
a TLS-inspecting proxy (and its product), a skewed clock, an expired or
misnamed certificate, a missing intermediate, or a missing/corrupt CA bundle,
with the fix for this operating system.

With --chain FILE it analyses a saved chain instead, with no network: PEM
as `openssl s_client -showcerts` prints it or a browser exports it (any
order, text between the blocks allowed), verified against the trust store
the agent would use, with the same causes. --host names the host the chain
is for (its leaf's names are checked); --export-root writes the
intercepting proxy's root when that is the cause.

Exit status: 0 when no check failed, 1 when one did, 2 when the
configuration (or the chain file) cannot be loaded.

Examples:

\b
  entragate doctor --config /etc/entragate/config.toml
  entragate doctor --json | jq '.checks[] | select(.status=="fail")'
  openssl s_client -connect login.microsoftonline.com:443 -showcerts </dev/null > chain.txt
  entragate doctor --chain chain.txt --host login.microsoftonline.com --export-root proxy-root.pem
"""


def _parent_option(ctx: click.Context, key: str) -> object:
    root = ctx.find_root()
    return root.obj.get(key) if isinstance(root.obj, dict) else None


def emit(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.console import Console

    from entragate.doctor.render import render

    render(report, Console(highlight=False, soft_wrap=False))


@click.command("doctor", help=_HELP, short_help=DOCTOR_SHORT_HELP)
@config_option(
    "Configuration file (default: the global --config, $ENTRAGATE_CONFIG, "
    "/etc/entragate/config.toml, then ./entragate.toml)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (ok, code, checks).")
@click.option(
    "--os-release",
    "os_release",
    default="/etc/os-release",
    show_default=True,
    hidden=True,
    help="os-release file used to choose the fix commands.",
)
@click.option(
    "--chain",
    "chain_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Analyse this saved PEM chain offline instead of connecting.",
)
@click.option("--host", default=None, metavar="NAME", help="With --chain: the host the chain is for.")
@click.option(
    "--export-root",
    "export_root",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="With --chain: write the intercepting proxy's root (PEM) here when that is the cause.",
)
@click.option(
    "--at",
    "at",
    default=None,
    metavar="TIME",
    help="With --chain: judge validity at this ISO 8601 time (default: now), e.g. when it was saved.",
)
@click.option(
    "--tenant",
    "tenant",
    default=None,
    metavar="NAME",
    help="Only this tenant (default, or a [tenant.NAME] table's name); by default every tenant, concurrently.",
)
@click.pass_context
def doctor_command(
    ctx: click.Context,
    config_path: Path | None,
    tenant: str | None,
    as_json: bool,
    os_release: str,
    chain_path: Path | None,
    host: str | None,
    export_root: Path | None,
    at: str | None,
) -> None:
    path = config_path or _parent_option(ctx, "config_path")
    as_json = as_json or bool(_parent_option(ctx, "json"))
    env = dict(os.environ)
    if chain_path is None and (host or export_root or at):
        raise click.UsageError("--host, --export-root and --at go with --chain FILE")
    try:
        config = load_config(path if isinstance(path, str | Path) else None, env, require_credentials=False)
    except ConfigError as exc:
        emit(config_error_report(exc.problems, exc.source), as_json)
        sys.exit(2)
    if chain_path is not None:
        sys.exit(
            run_chain(config, env, os_release, chain_path, host=host, export_root=export_root,
                      at=at, as_json=as_json)
        )
    if tenant is not None and tenant not in config.tenant_names():
        raise click.UsageError(f"no tenant {tenant!r} in the configuration (configured: "
                               f"{', '.join(config.tenant_names())})")
    names = [tenant] if tenant is not None else doctored_tenants(config)
    if len(names) == 1 and (tenant is not None or not config.tenants):
        report = run_doctor(config.for_tenant(names[0]), env, os_release)
        emit(report, as_json)
        sys.exit(0 if report.ok else 1)
    reports = run_tenants(config, names, env, os_release)
    if as_json:
        click.echo(json.dumps({"ok": all(r.ok for r in reports.values()),
                               "tenants": {n: r.to_json() for n, r in reports.items()}}, indent=2))
    else:
        for name, report in reports.items():
            who = config.tenant(name)
            click.echo(f"tenant {name} ({who.tenant_id or 'no tenant_id'}, {who.cloud})")
            emit(report, False)
            click.echo("")
    sys.exit(0 if all(r.ok for r in reports.values()) else 1)


def doctored_tenants(config: Config) -> list[str]:
    """Every tenant with ACLs or a tenant_id (an unused, empty default tenant is left out)."""
    serving = config.serving_tenants()
    return [n for n in config.tenant_names() if n in serving or config.tenant(n).tenant_id]


def run_tenants(config: Config, names: list[str], env: dict[str, str], os_release: str) -> dict[str, Report]:
    """One doctor run per tenant, all at once (each on its own thread: a tenant whose
    checks wait for timeouts does not hold up the others' reports); in ``names`` order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="entragate-doctor") as pool:
        futures = {n: pool.submit(run_doctor, config.for_tenant(n), env, os_release) for n in names}
        return {n: futures[n].result() for n in names}


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-05-01T21:15:00Z)",
                                 param_hint="--at") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run_chain(
    config: Config,
    env: dict[str, str],
    os_release: str,
    chain_file: Path,
    *,
    host: str | None,
    export_root: Path | None,
    at: str | None,
    as_json: bool,
) -> int:
    """``doctor --chain``: the exit status (0 verified, 1 a cause, 2 nothing to analyse)."""
    from cryptography.hazmat.primitives import serialization

    from entragate.doctor.certinfo import display_name
    from entragate.doctor.checks import load_expected_roots
    from entragate.doctor.offline import (
        ChainFileError,
        analyse_chain,
        fingerprint,
        intercepting_root,
        read_chain,
    )
    from entragate.doctor.osfix import read_os_release
    from entragate.doctor.truststore import inspect_trust
    from entragate.transport import resolve_trust

    now = _parse_time(at) if at else None
    try:
        certs = read_chain(chain_file.read_bytes(), str(chain_file))
    except OSError as exc:
        click.echo(f"error: {chain_file} cannot be read: {exc.strerror or exc}", err=True)
        return 2
    except ChainFileError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    expected_roots, _ = load_expected_roots(config)
    source = resolve_trust(config, env)
    trust = inspect_trust(source.cafile, source.capath, source.origin, expected_roots=expected_roots)
    report = analyse_chain(
        certs, trust=trust, env=env, os_info=read_os_release(os_release), expected_roots=expected_roots,
        host=host, now=now, source=str(chain_file),
    )
    notes: list[str] = []
    if export_root is not None:
        root = intercepting_root(report)
        if root is None:
            why = (
                "the chain does not include the intercepting proxy's root: export it from a browser "
                "or ask the proxy's administrators for it"
                if any(c.id == "tls_interception" for c in report.check("tls").causes)
                else "the cause is not a TLS-inspecting proxy"
            )
            notes.append(f"nothing written to {export_root}: {why}")
        else:
            export_root.write_bytes(root.public_bytes(serialization.Encoding.PEM))
            sha = fingerprint(root)
            report.extra["export_root"] = {"path": str(export_root), "sha256": sha,
                                           "subject": root.subject.rfc4514_string()}
            notes.append(
                f"wrote the intercepting root '{root.subject.rfc4514_string()}' to {export_root}\n"
                f"SHA-256 fingerprint: {sha}\n"
                "verify this fingerprint out of band (with the proxy's administrators) before using "
                f"the file as ca_bundle: openssl x509 -in {export_root} -noout -fingerprint -sha256"
            )
    if not as_json:
        click.echo(f"chain in {chain_file} ({len(certs)} certificate(s)):")
        for i, cert in enumerate(certs):
            click.echo(f"  {i} {display_name(cert.subject)}  (issuer: {display_name(cert.issuer)})")
            click.echo(f"    SHA-256 {fingerprint(cert)}")
    emit(report, as_json)
    for note in notes:
        click.echo(note, err=as_json)
    return 0 if report.ok else 1
