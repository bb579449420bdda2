"""entragate(1), rendered in roff from the CLI's own help texts (one source for both)."""

from __future__ import annotations

import inspect

import click

from entragate.config_keys import KEYS


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.split("\n"))


def _paragraphs(text: str) -> list[str]:
    """Help text as roff: indented paragraphs (examples) stay as they are."""
    out: list[str] = []
    for block in inspect.cleandoc(text).split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip() != "\b"]
        if not lines:
            continue
        if all(line.startswith("  ") for line in lines):
            out += [".PP", ".nf", ".RS 4", *(_escape(line.strip()) for line in lines), ".RE", ".fi"]
        else:
            out += [".PP", _escape(" ".join(line.strip() for line in lines))]
    return out


def _options(ctx: click.Context, command: click.Command) -> list[str]:
    out: list[str] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{_escape(names)}\\fR", _escape(help_text or "")]
    return out


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """A context as click makes it for a real invocation (the command's own settings, such
    as ``-h``), so that the page does not depend on which context asked first."""
    return click.Context(command, info_name=name, parent=parent, **command.context_settings)


def _command(ctx: click.Context, command: click.Command, path: str) -> list[str]:
    usage = " ".join(command.collect_usage_pieces(ctx))
    out = [f'.SS "{_escape(path)} {_escape(usage)}"', *_paragraphs(command.help or "")]
    if command.epilog:
        out += _paragraphs(command.epilog)
    out += _options(ctx, command)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _command(_context(sub, name, ctx), sub, f"{path} {name}")
    return out


def render() -> str:
    from entragate.cli import main

    root = _context(main, "entragate", None)
    out = [
        '.TH ENTRAGATE 1 "" "entragate" "User Commands"',
        ".SH NAME",
        "entragate \\- just\\-in\\-time IP allowlisting for Microsoft Entra ID named locations",
        ".SH SYNOPSIS",
        ".B entragate",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *_paragraphs(main.help or ""),
        ".SH OPTIONS",
        *_options(root, main),
        ".SH COMMANDS",
    ]
    for name in main.list_commands(root):
        command = main.get_command(root, name)
        if command is not None and not command.hidden:
            out += _command(_context(command, name, root), command, f"entragate {name}")
    out += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBENTRAGATE_CONFIG\\fR",
        "The configuration file, when \\fB\\-\\-config\\fR is not given.",
    ]
    for key in KEYS:
        if key.env:
            out += [".TP", f"\\fB{_escape(key.env)}\\fR", f"Overrides \\fB{_escape(key.dotted)}\\fR."]
    out += [
        ".TP",
        "\\fBHTTPS_PROXY\\fR, \\fBNO_PROXY\\fR",
        "The proxy for Microsoft's endpoints, as every HTTP tool reads them.",
        ".TP",
        "\\fB_ENTRAGATE_COMPLETE\\fR",
        "bash_source, zsh_source or fish_source: print the shell completion script.",
        ".SH FILES",
        ".TP",
        "\\fI/etc/entragate/config.toml\\fR",
        "The configuration (every key: docs/configuration.md).",
        ".TP",
        "\\fI/var/lib/entragate/grants.db\\fR",
        "The default grant store.",
        ".SH EXIT STATUS",
        "0 success, 1 an operation failed (the error code is printed), 2 usage or",
        "configuration error.",
        ".SH SEE ALSO",
        "\\fBentragate explain\\fR ENTRA000 ... ENTRA009; docs/operations.md.",
    ]
    return "\n".join(out) + "\n"
