"""``sluice validate --live`` for Kafka: what only the brokers can tell, each problem one line at its line of
``sluice.yaml``.

- Every ``kafka://`` connection an object reads (a batch Kafka source, a streaming object, on either engine): its
  broker answers within :data:`LIVE_TIMEOUT_S` seconds (else one line at the connection's line, naming the objects
  that use it), and every topic the objects read (``topic``, and a streaming object's ``topics``) exists (else one
  line per object at its ``source:`` line). Sluice never creates the topics it reads: a missing one fails the object.
- The dead-letter topic of each of those topics that exists (:meth:`RecordSettings.dead_letter_topic
  <sluice.streaming.options.RecordSettings.dead_letter_topic>`: ``<topic>.dead-letter``, the topic ``dead_letter``
  names, none with ``dead_letter: false``; batch Kafka sources and streaming objects alike send their undecodable
  records there). Sluice does not create it either: its producer only asks the broker for it. When one is missing,
  the broker's ``auto.create.topics.enable`` is read (once per broker, ``describe_configs`` of one of its brokers):
  false is a problem (one line per object at its ``source:`` line: the first dead letter would fail the object,
  :func:`~sluice.streaming.dead_letters.missing_topic`); true, or a setting that cannot be read, a note (the broker
  creates the topic at the first dead letter).
- A Kafka ``bus:``: its broker answers within the same time (else one line at the ``bus:`` line). The bus's own
  topics are created by Sluice the first time it uses them (docs/bus.md), so those not there yet are a note, not
  a problem.

Each broker is asked once, for the names of all its topics (a metadata request naming no topic, which never creates
one, whatever the broker's ``auto.create.topics.enable``), and, only when a dead-letter topic is missing there, once
for that setting (of its broker of lowest id: a cluster's brokers are expected to agree), through an ``AdminClient``
whose log lines go to Sluice's logging (:func:`~sluice.bus.kafka_common.quiet`).
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
    broker: int | None = None
    """The id of one of its brokers (the lowest), whose configuration says whether it creates topics."""


_Asker = Callable[[str], _Answer]
"""``ask(bootstrap)``: the broker's :class:`_Answer`, asked once per ``bootstrap`` in one check."""
_Creates = Callable[[str, _Answer], bool | str]
"""``creates(bootstrap, answer)``: the broker's ``auto.create.topics.enable``, or why it could not be read
(:func:`_auto_create`), asked once per ``bootstrap`` in one check."""


def live_kafka(project: Project, timeout_s: float | None = None) -> KafkaLive:
    """Every live problem of ``project``'s Kafka connections, topics and bus (see the module), and the notes.

    ``timeout_s``: how long each broker may take to answer, in seconds (None: :data:`LIVE_TIMEOUT_S`). Raises nothing
    for a broker that cannot be reached, a topic that is missing or a dead-letter topic the broker will not create:
    each is a :class:`~sluice.errors.ConfigError` (file and line of ``sluice.yaml``) in the result's ``problems``, in
    the order of their lines. A dead-letter topic the broker creates at first use, or may (its setting could not be
    read), is a line of ``notes``, in the order of the objects.
    """
    wait_s = LIVE_TIMEOUT_S if timeout_s is None else timeout_s
    answers: dict[str, _Answer] = {}

    def ask(bootstrap: str) -> _Answer:
        if bootstrap not in answers:
            answers[bootstrap] = _topics(bootstrap, wait_s)
        return answers[bootstrap]

    settings: dict[str, bool | str] = {}

    def creates(bootstrap: str, answer: _Answer) -> bool | str:
        if bootstrap not in settings:
            settings[bootstrap] = _auto_create(bootstrap, answer.broker, wait_s)
        return settings[bootstrap]

    found = KafkaLive()
    readers: dict[str, list[ObjectSpec]] = {}
    for obj in project.objects.values():
        if obj.source is not None and obj.source.kind == "kafka":
            readers.setdefault(str(obj.source.get("connection")), []).append(obj)
    for name, objects in readers.items():
        _check_connection(project, name, objects, ask, creates, wait_s, found)
    _check_bus(project, ask, wait_s, found)
    found.problems.sort(key=lambda problem: problem.line or 0)
    return found


def _check_connection(
    project: Project,
    name: str,
    objects: Sequence[ObjectSpec],
    ask: _Asker,
    creates: _Creates,
    timeout_s: float,
    found: KafkaLive,
) -> None:
    """The problems and notes of connection ``name``, of the topics ``objects`` read through it and of their
    dead-letter topics, added to ``found``."""
    from sluice.project.validate import object_label, object_problem
    from sluice.urls import kafka_servers

    spec = project.connections.get(name)
    if spec is None:  # reported by the file's own checks
        return
    try:
        bootstrap = kafka_servers(spec.url)
    except ConfigError:  # idem
        return
    answer = ask(bootstrap)
    if answer.error is not None:
        users = ", ".join(object_label(obj) for obj in objects)
        found.problems.append(
            ConfigError(
                f"connection '{name}' (read by {users}): {_silent(bootstrap, timeout_s, answer.error)}; start the "
                "broker or fix the connection's kafka://host:port URL",
                spec.origin.file,
                spec.origin.line,
            )
        )
        return
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
            found.problems.append(object_problem(obj, message, "source"))
        letters = _missing_letters(obj, [topic for topic in dict.fromkeys(read) if topic in answer.topics], answer)
        if letters:
            where = f"on Kafka at {bootstrap} (connection '{name}')"
            _missing_letters_found(obj, letters, where, creates(bootstrap, answer), found)


def _missing_letters(obj: ObjectSpec, topics: Sequence[str], answer: _Answer) -> dict[str, list[str]]:
    """The dead-letter topics of ``topics`` (read by ``obj``) that ``answer`` does not list, each with the topics
    whose undecodable records go there, in the order of ``topics``."""
    from sluice.streaming.options import RecordSettings

    assert obj.source is not None
    settings = obj.source.options
    if not isinstance(settings, RecordSettings):  # a kafka source's options always are
        return {}
    letters: dict[str, list[str]] = {}
    for topic in topics:
        target = settings.dead_letter_topic(topic)
        if target is not None and target not in answer.topics:
            letters.setdefault(target, []).append(topic)
    return letters


def _missing_letters_found(
    obj: ObjectSpec, letters: dict[str, list[str]], where: str, creates: bool | str, found: KafkaLive
) -> None:
    """``obj``'s missing dead-letter topics ``letters`` (dead-letter topic: the topics it serves) on the broker
    ``where`` (``on Kafka at H:P (connection 'c')``): a problem when the broker does not create topics (``creates``
    False), else a note (True, or why its setting could not be read)."""
    from sluice.project.validate import object_label, object_problem

    def served(target: str) -> str:
        topics = letters[target]
        return f"'{target}' (of topic{'s' if len(topics) > 1 else ''} {', '.join(f'{t!r}' for t in topics)})"

    several = len(letters) > 1
    noun, verb, pronoun = ("topics", "do", "them") if several else ("topic", "does", "it")
    what = f"dead-letter {noun} {', '.join(served(target) for target in letters)} {verb} not exist"
    if creates is False:
        message = (
            f"{what} {where} and the broker does not create topics (auto.create.topics.enable=false): the first "
            f"record that cannot be decoded would fail the object; create {pronoun}, or set dead_letter to an "
            "existing topic or false"
        )
        found.problems.append(object_problem(obj, message, "source"))
    elif creates is True:
        found.notes.append(
            f"{object_label(obj)}: {what} yet {where}: the broker creates {pronoun} at the first dead letter "
            "(auto.create.topics.enable=true)"
        )
    else:
        found.notes.append(
            f"{object_label(obj)}: {what} yet {where}: the broker creates {pronoun} at the first dead letter if its "
            f"auto.create.topics.enable is true (it could not be read: {creates}); if it is false, create {pronoun}, "
            "or set dead_letter to an existing topic or false"
        )


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
    return _Answer(frozenset(metadata.topics), broker=min(metadata.brokers, default=None))


def _auto_create(bootstrap: str, broker: int | None, timeout_s: float) -> bool | str:
    """Whether broker ``broker`` (its id) of the cluster at ``bootstrap`` creates a topic a client asks for
    (``auto.create.topics.enable``), read with ``describe_configs`` within ``timeout_s`` seconds; or, as a str, why
    it could not be read (no broker id, a timeout, a refusal such as a missing DescribeConfigs permission). Raises
    nothing."""
    from concurrent.futures import TimeoutError as FutureTimeout

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

    from sluice.bus.kafka_common import quiet

    if broker is None:
        return "the cluster listed no broker"
    admin = AdminClient(quiet(bootstrap, {"bootstrap.servers": bootstrap}))
    resource = ConfigResource(ResourceType.BROKER, str(broker))
    try:
        [future] = admin.describe_configs([resource], request_timeout=timeout_s).values()
        entry = future.result(timeout=timeout_s + 1).get("auto.create.topics.enable")
    except KafkaException as exc:
        return str(exc.args[0].str())
    except FutureTimeout:
        return f"no answer within {timeout_s:g} s"
    value = None if entry is None else str(entry.value)
    if value not in ("true", "false"):
        return f"broker {broker} did not give auto.create.topics.enable"
    return value == "true"


def _silent(bootstrap: str, timeout_s: float, error: str) -> str:
    """``Kafka at H:P did not answer within N s (error)``."""
    return f"Kafka at {bootstrap} did not answer within {timeout_s:g} s ({error})"
