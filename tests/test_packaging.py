"""What ships beside the code: alert rules, the systemd unit, completion, man page, wheel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
import yaml

import entragate
from entragate.config import ConfigError, load_config
from entragate.config_keys import KEYS
from entragate.docgen import GENERATED
from entragate.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
ALERTS = PACKAGING / "prometheus-alerts.yml"
DURATION = re.compile(r"^\d+[smhdwy]$")
ENTRAGATE = str(Path(sys.executable).parent / "entragate")


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    rules: list[dict[str, object]] = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"], group
        rules.extend(group["rules"])
    return rules


def test_alert_rules_have_the_shape_prometheus_loads() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), names
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
        assert DURATION.match(str(rule.get("for", "0s"))), rule
        labels = rule["labels"]
        assert isinstance(labels, dict) and labels["severity"] in ("critical", "warning"), rule
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and {"summary", "description"} <= set(annotations)


def test_alert_rules_use_only_metrics_the_agent_exports() -> None:
    metrics = Metrics()
    # Give every labelled series a sample so that it appears in the exposition.
    metrics.set_grants("staff", 1)
    metrics.set_ranges("staff", "Entragate staff", 1)
    metrics.set_error("staff", "Entragate staff", "ENTRA005")
    metrics.graph_response("GET", 200)
    metrics.observe_lag(1.0)
    metrics.set_writer(True)
    metrics.throttled()
    metrics.set_pace(1.0)
    exported = set(re.findall(r"^(entragate_\w+?)(?:\{| )", metrics.render().decode(), re.M))
    used = {name for rule in alert_rules() for name in re.findall(r"entragate_\w+", str(rule["expr"]))}
    assert used, "the rules use no entragate metric"
    assert used <= exported, used - exported


def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- generated files


@pytest.mark.parametrize("relative", sorted(GENERATED))
def test_generated_file_is_current(relative: str) -> None:
    # A fresh process, as `make docs` runs: click caches each command's help option on
    # first use, so a page rendered after other tests built contexts could differ.
    generated = subprocess.run(
        [sys.executable, "-m", "entragate.docgen", "--print", relative],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    committed = (ROOT / relative).read_text(encoding="utf-8")
    assert committed == generated, f"{relative} is stale: run `make docs`"


def test_the_example_configuration_shows_every_key_with_a_valid_value() -> None:
    text = (PACKAGING / "entragate.example.toml").read_text(encoding="utf-8")
    # the [tenant.NAME] header is commented too: an empty tenant table would need credentials
    uncommented = re.sub(r"^# (\w+ = |\[tenant\.)", r"\1", text, flags=re.M)
    document = tomllib.loads(uncommented)
    shown = {(t, k) for t, k in _flatten(document)}
    assert shown == {(key.table, key.name) for key in KEYS}


def _flatten(document: dict[str, object]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in document.items():
        if name == "agent" and isinstance(value, dict):
            pairs += [("agent", k) for k in value]
        elif name in ("acl", "tenant") and isinstance(value, dict):
            pairs += [(name, k) for table in value.values() for k in table]
        else:
            pairs.append(("", name))
    return pairs


def test_every_key_of_the_reference_is_accepted_and_a_near_miss_gets_a_suggestion(
    tmp_path: Path,
) -> None:
    path = tmp_path / "entragate.toml"
    path.write_text('tenant_idd = "x"\n[agent]\nlistn = "127.0.0.1:1"\n[acl.staff]\nlocaton = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={}, require_credentials=False)
    problems = "\n".join(caught.value.problems)
    for hint in ("did you mean 'tenant_id'", "did you mean 'listen'", "did you mean 'location'"):
        assert hint in problems, problems


# --------------------------------------------------------------------------- systemd


def test_the_systemd_unit_is_rated_at_most_2_0_exposed() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(PACKAGING / "entragate.service")],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for entragate\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


# --------------------------------------------------------------------------- shell completion


def _entragate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([ENTRAGATE, *args], capture_output=True, text=True, env=full_env, timeout=60)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_script_is_printed(shell: str) -> None:
    result = _entragate(env={"_ENTRAGATE_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0, result.stderr
    assert "_entragate_completion" in result.stdout, result.stdout


def test_completion_completes_a_command_name() -> None:
    result = _entragate(
        env={"_ENTRAGATE_COMPLETE": "bash_complete", "COMP_WORDS": "entragate gra", "COMP_CWORD": "1"}
    )
    assert result.stdout.split() == ["plain,grant"], result.stdout


# --------------------------------------------------------------------------- wheel


def test_the_wheel_installs_into_a_fresh_venv_with_a_working_entragate(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("entragate-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    version = subprocess.run(
        [str(venv / "bin" / "entragate"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and entragate.__version__ in version.stdout, version
    explain = subprocess.run(
        [str(venv / "bin" / "entragate"), "explain", "ENTRA003"], capture_output=True, text=True
    )
    assert explain.returncode == 0 and "ENTRA003" in explain.stdout, explain
    page = subprocess.run(  # the status page ships inside the package
        [str(venv / "bin" / "python"), "-c", "from entragate.status_page import render_page; "
         "print(len(render_page(1.0)[0]))"], capture_output=True, text=True, timeout=60,
    )
    assert page.returncode == 0 and int(page.stdout) > 10_000, page


# --------------------------------------------------------------------------- help and man page


def _commands() -> list[tuple[str, click.Command, click.Context]]:
    from entragate.cli import main

    found: list[tuple[str, click.Command, click.Context]] = []

    def walk(command: click.Command, ctx: click.Context, path: str) -> None:
        found.append((path, command, ctx))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                context = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
                walk(sub, context, f"{path} {name}")

    walk(main, click.Context(main, info_name="entragate", **main.context_settings), "entragate")
    return found


def test_every_command_help_shows_an_example_and_is_in_the_man_page() -> None:
    manpage = (PACKAGING / "entragate.1").read_text(encoding="utf-8")
    for path, command, ctx in _commands():
        assert "Example" in command.get_help(ctx), f"{path} --help shows no example"
        if path != "entragate":
            assert f'.SS "{path.replace("-", chr(92) + "-")} ' in manpage, path
