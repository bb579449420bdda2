"""The human form of a doctor report: one line per check, then the first failure's
causes and fix, and where to read more (``docs/errors/ENTRAnnn.md``)."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from entragate.doctor.checks import FAIL, PASS, SKIP, WARN
from entragate.doctor.runner import Report
from entragate.errors.codes import Code

SYMBOLS = {PASS: ("✓", "green"), WARN: ("!", "yellow"), FAIL: ("✗", "red"), SKIP: ("-", "dim")}


def render(report: Report, console: Console) -> None:
    title = "entragate doctor"
    if report.os_info is not None:
        title += f" on {report.os_info.pretty_name}"
    if report.config_source:
        title += f" ({report.config_source})"
    table = Table(title=escape(title), box=box.SIMPLE, show_header=True, title_justify="left", expand=False)
    table.add_column("", no_wrap=True, width=1)
    table.add_column("check", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("result", overflow="fold")
    for check in report.checks:
        symbol, style = SYMBOLS.get(check.status, ("?", ""))
        table.add_row(
            f"[{style}]{symbol}[/]",
            check.id,
            check.code or "",
            escape(check.summary),
        )
    console.print(table)
    first = report.first_failure
    if first is None:
        warns = [c for c in report.checks if c.status == WARN]
        verdict = "all checks passed" if not warns else f"no failure ({len(warns)} warning(s))"
        console.print(f"[green]{verdict}[/] in {report.elapsed:.1f}s")
        for w in warns:
            for line in w.fix:
                console.print(f"  {escape(w.id)}: {escape(line)}", soft_wrap=True)
        return
    code = first.code or report.code
    heading = f"{first.id} failed"
    if code:
        known = Code.parse(code)
        heading = f"{code} {known.title if known else ''}".strip() + f" ({first.id})"
    console.print(f"[bold red]{escape(heading)}[/]")
    for cause in first.causes:
        extra = []
        if cause.vendor:
            extra.append(f"product: {cause.vendor}")
        if cause.skew_seconds is not None:
            extra.append(f"skew: {cause.skew_seconds:+d} s")
        suffix = f" [{', '.join(extra)}]" if extra else ""
        console.print(f"cause ({cause.id}): {escape(cause.summary)}{escape(suffix)}", soft_wrap=True)
    if first.fix:
        console.print("fix:")
        for line in first.fix:
            console.print(f"  {escape(line)}", soft_wrap=True)
    if code:
        console.print(f"more: docs/errors/{code}.md (entragate explain {code})")


def render_text(report: Report, width: int = 120) -> str:
    """The human form as plain text (no colour), e.g. for tests and logs."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
    render(report, console)
    return buf.getvalue()
