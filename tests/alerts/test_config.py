"""The ``alerts:`` section of sluice.yaml: what it becomes, and every mistake reported at its line."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from sluice.alerts.plugins import EmailOptions
from sluice.project.load import load_project, parse_project

OBJECTS = """
objects:
  - {id: 1001, name: orders}
  - {id: 1002, name: users}
"""
GOOD = (
    OBJECTS
    + """
alerts:
  ui_url: http://sluice.example:8000/
  throttle: 30m
  channels:
    oncall:
      type: email
      host: smtp.example.com
      port: 465
      security: ssl
      username: alerts
      password: ${SMTP_PASSWORD}
      from: sluice@example.com
      to: [oncall@example.com]
    team: {type: slack, url: "https://hooks.slack.com/services/T/B/x"}
    audit: {type: webhook, url: "https://audit.example.com/hook", headers: {Authorization: "Bearer ${AUDIT_TOKEN:-none}"}}
  rules:
    - on: [object_failed, check_failed]
      criticality: high
      channels: [oncall]
      severity: critical
      continue: true
    - {on: run_failed, objects: [orders, 1002], channels: [team], throttle: 0}
    - {"on": sla_missed, schedules: [nightly], channels: [team, audit], name: deadlines}
  sla:
    - {schedule: nightly, finish_within: 2h}
    - {name: morning, targets: [orders], by: "6:00", timezone: Europe/Paris}
    - {schedule: nightly, by: "06:30 America/New_York"}
schedules: {nightly: {cron: "0 2 * * *"}}
"""
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    _, found = parse_project(write(tmp_path, text))
    return [str(p).replace(str(tmp_path) + "/", "") for p in found]


def test_the_section_is_read_into_channels_rules_and_deadlines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "from-the-environment")
    spec = load_project(write(tmp_path, GOOD)).alerts
    assert spec is not None and spec.ui_url == "http://sluice.example:8000"
    email = spec.channels["oncall"].options
    assert isinstance(email, EmailOptions) and email.password == "from-the-environment" and email.from_ == "sluice@example.com"
    assert [c.type for c in spec.channels.values()] == ["email", "slack", "webhook"]
    first, second, third = spec.rules
    assert first.on == {"object_failed", "check_failed"} and first.criticality == {"high"} and first.cont
    assert first.severity == "critical" and first.throttle_s == 1800.0
    assert second.objects == {1001, 1002} and second.throttle_s == 0.0 and not second.cont
    assert third.name == "deadlines" and third.schedules == {"nightly"} and third.channels == ("team", "audit")
    within, morning, new_york = spec.slas
    assert (new_york.by, new_york.timezone) == (time(6, 30), "America/New_York")
    assert within.within_s == 7200.0 and within.name == "sla 1"
    assert morning.targets == {1001} and morning.by == time(6, 0)
    # a run of 2026-11-30 02:00 Paris time is late after 06:00 that day; one of 07:00, after 06:00 the next day
    assert morning.deadline(0.0, "2026-11-30T02:00:00+01:00") == datetime(2026, 11, 30, 5, 0, tzinfo=UTC).timestamp()
    assert morning.deadline(0.0, "2026-11-30T07:00:00+01:00") == datetime(2026, 12, 1, 5, 0, tzinfo=UTC).timestamp()
    assert within.deadline(100.0, None) == 7300.0


def test_every_mistake_is_reported_at_its_line(tmp_path: Path) -> None:
    text = (
        OBJECTS
        + """
alerts:
  throtle: 5m
  channels:
    mail: {type: email, host: smtp.example.com, to: [a@example.com]}
    chat: {type: slak, url: "https://x"}
    hook: {type: webhook, url: "ftp://x"}
  rules:
    - on: object_faild
      channels: [hook, mial]
    - {on: run_failed, channels: [hook], objects: [ordres], throttle: soon}
    - {on: run_failed, channels: [hook], criticality: urgent}
  sla:
    - {schedule: nightly, finish_within: 2h, by: "06:00"}
    - {targets: [1001], by: "25:00"}
    - {finish_within: 1h, timezone: Mars/Olympus}
    - {schedule: nightly, by: "06:00 Europe/Pariss"}
    - {schedule: nigthly, finish_within: 1h}
schedules: {nightly: {cron: "0 2 * * *"}}
sensors: {landing: {type: files, path: "in/*"}}
"""
    )
    assert problems(tmp_path, text) == [
        "sluice.yaml:7: alerts: unknown key 'throtle'. Did you mean 'throttle'? Known keys: channels, rules, sla, ui_url, "
        "throttle, sla_interval_s",
        "sluice.yaml:9: alerts: channel 'mail' (email): missing required option 'from'",
        "sluice.yaml:10: alerts: channel 'chat': type: unknown alert 'slak'. Did you mean 'slack'? Known: email, slack, webhook",
        "sluice.yaml:11: alerts: channel 'hook' (webhook): url: expected str matching regex '^https?://', got 'ftp://x'",
        "sluice.yaml:13: alerts: rule 1: unknown trigger 'object_faild'. Did you mean 'object_failed'? Triggers: "
        "object_failed, retries_exhausted, run_failed, check_failed, sla_missed, schedule_missed",
        "sluice.yaml:14: alerts: rule 1: unknown channel 'mial' (channels: mail, chat, hook). Did you mean 'mail'? "
        "Define it under alerts.channels",
        "sluice.yaml:15: alerts: rule 2: unknown object 'ordres'. Did you mean 'orders'? Name an object id or name of the "
        "project",
        "sluice.yaml:15: alerts: rule 2: 'soon' is not a duration: write a number and a unit, e.g. 500ms, 10s, 1m, 1h30m or "
        "2 minutes",
        "sluice.yaml:16: alerts: rule 3: criticality: invalid enum value 'urgent'. Choose one of: low, high",
        "sluice.yaml:18: alerts: sla 1: give one of finish_within (2h: from the run's start) or by ('06:00': a time of day)",
        "sluice.yaml:19: alerts: sla 2: by: '25:00' is not a time of day; write HH:MM such as '06:00'",
        "sluice.yaml:20: alerts: sla 3: say which runs it covers: schedule (a name) or targets (object ids or names)",
        "sluice.yaml:20: alerts: sla 3: unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Paris",
        "sluice.yaml:21: alerts: sla 4: unknown time zone 'Europe/Pariss'; use an IANA name such as Europe/Paris",
        "sluice.yaml:22: alerts: sla 5: unknown schedule 'nigthly' (schedules or sensors: nightly, landing). Did you mean "
        "'nightly'? Name one of them, or define it under schedules:",
    ]


def test_unquoted_on_is_the_trigger_key_not_a_boolean(tmp_path: Path) -> None:
    text = (
        OBJECTS
        + "alerts:\n  channels: {t: {type: webhook, url: 'http://x'}}\n  rules:\n    - on: run_failed\n      channels: [t]\n"
    )
    spec = load_project(write(tmp_path, text)).alerts
    assert spec is not None and spec.rules[0].on == {"run_failed"}


def test_the_json_schema_knows_each_channel_type() -> None:
    """`sluice schema` (editor completion): alerts.channels entries are one of the alert plugins' options."""
    import jsonschema
    import yaml

    from sluice.plugins.schema import project_schema

    validator = jsonschema.Draft202012Validator(project_schema())
    doc = yaml.safe_load(GOOD.replace("${SMTP_PASSWORD}", "x"))
    for rule in doc["alerts"]["rules"]:  # YAML 1.1 (PyYAML) reads on as True; editors read YAML 1.2, where it is "on"
        rule["on"] = rule.pop(True, rule.get("on"))
    assert [e.message for e in validator.iter_errors(doc)] == []
    for channel, key, value in (("team", "uri", "https://x"), ("audit", "type", "pager"), ("oncall", "port", "smtp")):
        wrong = copy.deepcopy(doc)
        wrong["alerts"]["channels"][channel][key] = value
        assert not validator.is_valid(wrong), (channel, key)


def test_the_example_of_docs_alerts_md_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text(encoding="utf-8")
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    for name in ("SMTP_PASSWORD", "SLACK_WEBHOOK_URL", "AUDIT_TOKEN"):
        monkeypatch.setenv(name, "https://hooks.example.com/x" if name == "SLACK_WEBHOOK_URL" else "x")
    objects = 'objects: [{id: 3001, name: fact_sales}]\nschedules: {nightly: {cron: "0 2 * * *"}}\n'
    spec = load_project(write(tmp_path, objects + example)).alerts
    assert spec is not None and [r.cont for r in spec.rules] == [True, False, False, False]
    assert [s.timezone for s in spec.slas] == ["UTC", "Europe/Paris"]


def test_a_webhook_or_slack_url_without_a_host_is_refused_at_its_line(tmp_path: Path) -> None:
    text = (
        OBJECTS
        + """
alerts:
  channels:
    hook:
      type: webhook
      url: "http:///hooks/sluice"
    team: {type: slack, url: "https://"}
    ok: {type: webhook, url: "http://[::1]:8080/hook"}
"""
    )
    assert problems(tmp_path, text) == [
        "sluice.yaml:10: alerts: channel 'hook' (webhook): url: 'http:///hooks/sluice' has no host; write https://host/path",
        "sluice.yaml:11: alerts: channel 'team' (slack): url: 'https://' has no host; write https://host/path",
    ]


def test_a_rule_or_deadline_naming_an_unknown_schedule_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    text = (
        OBJECTS
        + """schedules: {nightly: {cron: "0 2 * * *"}}
sensors: {landing: {type: files, path: "in/*"}}
alerts:
  channels: {team: {type: slack, url: "https://hooks.example.com/x"}}
  rules:
    - {on: run_failed, channels: [team], schedules: [nightly, landing, "backfill:3", nigthly]}
  sla:
    - {schedule: hourly, finish_within: 1h}
"""
    )
    assert problems(tmp_path, text) == [
        "sluice.yaml:10: alerts: rule 1: unknown schedule 'nigthly' (schedules or sensors: nightly, landing). Did you mean "
        "'nightly'? Name one of them, or define it under schedules:",
        "sluice.yaml:12: alerts: sla 1: unknown schedule 'hourly' (schedules or sensors: nightly, landing). "
        "Name one of them, or define it under schedules:",
    ]


def test_a_key_given_twice_is_refused_at_the_second_one(tmp_path: Path) -> None:
    text = (
        OBJECTS
        + """
alerts:
  throttle: 5m
  channels:
    hook: {type: webhook, url: "https://a.example.com"}
  channels:
    other:
      type: webhook
      url: "https://b.example.com"
      url: "https://c.example.com"
  rules:
    - on: run_failed
      on: object_failed
      channels: [other]
      throttle: 1m
      throttle: 2m
    - {"on": run_failed, on: check_failed, channels: [other]}
  throttle: 10m
"""
    )
    found = problems(tmp_path, text)
    assert found == [
        "sluice.yaml:10: alerts: key 'channels' is given twice; keep one",
        "sluice.yaml:14: alerts: channel 'other' (webhook): key 'url' is given twice; keep one",
        "sluice.yaml:17: alerts: rule 1: key 'on' is given twice; keep one",
        "sluice.yaml:20: alerts: rule 1: key 'throttle' is given twice; keep one",
        "sluice.yaml:21: alerts: rule 2: key 'on' is given twice; keep one",
        "sluice.yaml:22: alerts: key 'throttle' is given twice; keep one",
    ]


def test_a_rule_or_deadline_with_a_wrong_key_still_reports_its_other_problems(tmp_path: Path) -> None:
    text = (
        OBJECTS
        + """schedules: {nightly: {cron: "0 2 * * *"}}
sensors: {landing: {type: files, path: 'in/*', colour: red}}
alerts:
  channels: {team: {type: slack, url: "https://hooks.slack.com/services/T/B/x"}}
  rules:
    - on: [object_faild]
      channels: [teem]
      schedules: [nightly, landing, nigthly]
      objects: [ordres]
      severity: loud
  sla:
    - name: late
      schedule: nigthly
      by: "6h"
      timezone: Paris
      finish_within: 2 fortnights
      colour: red
"""
    )
    found = problems(tmp_path, text)
    assert [p.partition(":")[2].partition(":")[0] for p in found] == [str(n) for n in [6, *range(10, 15), *range(16, 22)]]
    assert found[1:6] == [
        "sluice.yaml:10: alerts: rule 1: unknown trigger 'object_faild'. Did you mean 'object_failed'? Triggers: "
        "object_failed, retries_exhausted, run_failed, check_failed, sla_missed, schedule_missed",
        "sluice.yaml:11: alerts: rule 1: unknown channel 'teem' (channels: team). Did you mean 'team'? Define it under "
        "alerts.channels",
        "sluice.yaml:12: alerts: rule 1: unknown schedule 'nigthly' (schedules or sensors: nightly, landing). Did you mean "
        "'nightly'? Name one of them, or define it under schedules:",  # landing, a sensor with a problem, is known
        "sluice.yaml:13: alerts: rule 1: unknown object 'ordres'. Did you mean 'orders'? Name an object id or name of the "
        "project",
        "sluice.yaml:14: alerts: rule 1: severity: invalid enum value 'loud'. Choose one of: critical, error, warning, info",
    ]
    assert [p.split(": ", 2)[2] for p in found[6:]] == [
        "sla late: give one of finish_within (2h: from the run's start) or by ('06:00': a time of day)",
        "sla late: unknown schedule 'nigthly' (schedules or sensors: nightly, landing). Did you mean 'nightly'? Name one "
        "of them, or define it under schedules:",
        "sla late: by: '6h' is not a time of day; write HH:MM such as '06:00'",
        "sla late: unknown time zone 'Paris'; use an IANA name such as Europe/Paris",
        "sla late: '2 fortnights' is not a duration: write a number and a unit, e.g. 500ms, 10s, 1m, 1h30m or 2 minutes",
        "sla 1: unknown key 'colour'. Known keys: name, schedule, targets, finish_within, by, timezone",
    ]
