"""``sluice validate --live`` for Kafka: what only the brokers can tell, each problem one line at its line of
``sluice.yaml``.

- Every ``kafka://`` connection an object reads (a batch Kafka source, a streaming object, on either engine): its
  broker answers within :data:`LIVE_TIMEOUT_S` seconds (else one line at the connection's line, naming the objects
  that use it), and every topic the objects read (``topic``, and a streaming object's ``topics``) exists (else one
  line per object at its ``source:`` line). Sluice never creates the topics it reads: a missing one fails the object.
- A Kafka ``bus:``: its broker answers within the same time (else one line at the ``bus:`` line). The bus's own
  topics are created by Sluice the first time it uses them (docs/bus.md), so those not there yet are a note, not
  a problem.

Each broker is asked once, for the names of all its topics (a metadata request naming no topic, which never creates
one, whatever the broker's ``auto.create.topics.enable``), through an ``AdminClient`` whose log lines go to Sluice's
logging (:func:`~sluice.bus.kafka_common.quiet`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sluice.errors import ConfigError
from sluice.project.model import ObjectSpec, Project

LIVE_TIMEOUT_S = 5.0
"""How long ``sluice validate --live`` waits for a Kafka broker to answer, in seconds (once per broker)."""


@dataclass(frozen=True, slots=True)
class KafkaLive:
    """What :func:`live_kafka` found: ``problems`` (``sluice validate --live`` fails) and ``notes`` (it prints)."""

    problems: list[ConfigError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A broker's answer: the names of its topics, or why it gave none (``error``)."""

    topics: frozenset[str] = frozenset()
    error: str | None = None


_Asker = Callable[[str], _Answer]
"""``ask(bootstrap)``: the broker's :class:`_Answer`, asked once per ``bootstrap`` in one check."""


def live_kafka(project: Project, timeout_s: float | None = None) -> KafkaLive:
    """Every live problem of ``project``'s Kafka connections, topics and bus (see the module), and the notes.

    ``timeout_s``: how long each broker may take to answer, in seconds (None: :data:`LIVE_TIMEOUT_S`). Raises nothing
    for a broker that cannot be reached or a topic that is missing: each is a :class:`~sluice.errors.ConfigError`
    (file and line of ``sluice.yaml``) in the result's ``problems``, in the order of their lines.
    """
    wait_s = LIVE_TIMEOUT_S if timeout_s is None else timeout_s
    answers: dict[str, _Answer] = {}

    def ask(bootstrap: str) -> _Answer:
        if bootstrap not in answers:
            answers[bootstrap] = _topics(bootstrap, wait_s)
        return answers[bootstrap]

    found = KafkaLive()
    readers: dict[str, list[ObjectSpec]] = {}
    for obj in project.objects.values():
        if obj.source is not None and obj.source.kind == "kafka":
            readers.setdefault(str(obj.source.get("connection")), []).append(obj)
    for name, objects in readers.items():
        found.problems.extend(_connection_problems(project, name, objects, ask, wait_s))
    _check_bus(project, ask, wait_s, found)
    found.problems.sort(key=lambda problem: problem.line or 0)
    return found


def _connection_problems(
    project: Project, name: str, objects: Sequence[ObjectSpec], ask: _Asker, timeout_s: float
) -> list[ConfigError]:
    """The problems of connection ``name`` and of the topics ``objects`` read through it."""
    from sluice.project.validate import object_label, object_problem
    from sluice.urls import kafka_servers

    spec = project.connections.get(name)
    if spec is None:  # reported by the file's own checks
        return []
    try:
        bootstrap = kafka_servers(spec.url)
    except ConfigError:  # idem
        return []
    answer = ask(bootstrap)
    if answer.error is not None:
        users = ", ".join(object_label(obj) for obj in objects)
        return [
            ConfigError(
                f"connection '{name}' (read by {users}): {_silent(bootstrap, timeout_s, answer.error)}; start the "
                "broker or fix the connection's kafka://host:port URL",
                spec.origin.file,
                spec.origin.line,
            )
        ]
    problems = []
    for obj in objects:
        assert obj.source is not None
        read = [str(obj.source.get("topic")), *obj.source.get("topics", ())]
        missing = [topic for topic in dict.fromkeys(read) if topic not in answer.topics]
        if missing:
            quoted = ", ".join(f"'{topic}'" for topic in missing)
            noun, verb, pronoun = ("topics", "do", "them") if len(missing) > 1 else ("topic", "does", "it")
            keys = "'topic' / 'topics'" if obj.source.get("topics") else "'topic'"
            message = (
                f"{noun} {quoted} {verb} not exist on Kafka at {bootstrap} (connection '{name}'); Sluice does not "
                f"create the topics it reads: create {pronoun} or fix {keys}"
            )
            problems.append(object_problem(obj, message, "source"))
    return problems


def _check_bus(project: Project, ask: _Asker, timeout_s: float, found: KafkaLive) -> None:
    """A Kafka ``bus:``'s broker answers (else a problem at its line); its topics not made yet are a note."""
    from sluice.bus import names
    from sluice.bus.plugins import KafkaBusOptions
    from sluice.plugins.urls import resolve_url
    from sluice.urls import connection_scheme, kafka_servers

    if not project.bus_url or connection_scheme(project.bus_url) != "kafka":
        return
    try:
        bootstrap = kafka_servers(project.bus_url)
        _, options = resolve_url("bus", project.bus_url, label="bus")
    except ConfigError:  # reported by the file's own checks
        return
    answer = ask(bootstrap)
    if answer.error is not None:
        found.problems.append(
            ConfigError(
                f"bus: {_silent(bootstrap, timeout_s, answer.error)}; start the broker, or point 'bus:' at a running one",
                str(project.source_file),
                project.bus_line,
            )
        )
        return
    if not project.objects:  # syncs only: their topics are named after their tables and made by the sync
        return
    prefix = f"{options.namespace}." if isinstance(options, KafkaBusOptions) and options.namespace else ""
    stages = sorted({obj.stage for obj in project.objects.values()})
    wanted = [names.EVENTS_TOPIC, *(names.ready_topic(stage) for stage in stages), names.DEAD_LETTER_TOPIC]
    missing = [prefix + topic for topic in wanted if prefix + topic not in answer.topics]
    if missing:
        found.notes.append(
            f"bus: topic(s) {', '.join(missing)} do not exist yet on Kafka at {bootstrap}: Sluice creates them the "
            "first time the bus uses them (docs/bus.md)"
        )


def _topics(bootstrap: str, timeout_s: float) -> _Answer:
    """The names of the topics of the broker at ``bootstrap``, or why it did not answer within ``timeout_s`` seconds."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from sluice.bus.kafka_common import quiet

    admin = AdminClient(quiet(bootstrap, {"bootstrap.servers": bootstrap}))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return _Answer(error=exc.args[0].str())
    return _Answer(frozenset(metadata.topics))


def _silent(bootstrap: str, timeout_s: float, error: str) -> str:
    """``Kafka at H:P did not answer within N s (error)``."""
    return f"Kafka at {bootstrap} did not answer within {timeout_s:g} s ({error})"
