"""The registry: what each domain contributes to a running deployment, and the services it runs on.

Nothing registers itself by being imported. The composition root (`petportrait.services`) makes one
`Registry`, calls each domain's `register(registry)` in a fixed order, checks the result against the
retention policy (`Registry.validate`) and freezes it. A domain contributes:

- item kinds: the table of each kind of stored item the retention policy names (photo, model, ...);
- the data inventory: every other place that can hold personal data (a table, a folder under the data
  folder, the queue, Redis keys, logs), declared once with what it holds, its source and how it ends
  (`add_store`; `add_table_rule` declares a table); a store that ends with its source also gives the
  function that deletes what names a deleted item or pet (`ends_with_subjects`);
- erasure hooks: run in the transaction that erases an account;
- export sections: `<name>.json` in a person's data export;
- job handlers: what runs a job of a kind (training, rendering, ...);
- periodic tasks: run by the one consumer that holds the periodic lease;
- prompt screens: asked about every prompt of a render request (the content policy);
- event subscribers: called in the transaction of the event (`emit`), e.g. to write an outbox row.

Services reach the registry through the session: the root builds the session factory with
`info={"registry": registry}`, so `registry_of(session)` works wherever a session does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from petportrait.db import make_session_factory
from petportrait.jobs.base import JobQueue
from petportrait.jobs.runner import JobHandler
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

# Columns every table of an item kind must have (the sweeper, erasure, export and read-time hiding use them).
ITEM_COLUMNS = ("id", "owner_id", "storage_key", "sha256", "expires_at")

ErasureHook = Callable[[Session, str, str | None], None]
"""hook(session, user_id, actor_id), run in the transaction that erases the account."""

ExportSection = Callable[[Session, str], list[dict[str, Any]]]
"""fn(session, user_id) -> JSON-ready records for `<name>.json` in the person's export."""

PromptScreen = Callable[[str, Settings], None]
"""screen(prompt, settings) raises a ProblemError to refuse a prompt (the content policy registers one)."""

Subscriber = Callable[[Session, "Event"], None]
"""fn(session, event), run in the transaction of the event."""

BatchSubscriber = Callable[[Session, Sequence["Event"]], None]
"""fn(session, events): what a subscriber does with many events of one transaction at once (`emit_many`)."""


class RegistryError(RuntimeError):
    """The domains registered something inconsistent; the message says what, as a sentence."""


@dataclass(frozen=True)
class Event:
    """Something that happened, emitted in the transaction that made it happen."""

    name: str
    owner_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemKind:
    """What the retention policy says of a kind of stored item, as the registry checks tables against it."""

    name: str
    clock_column: str | None  # the column its period runs from; None for a kind bound to an event
    rule: str  # the rule in words


@dataclass(frozen=True)
class PeriodicTask:
    """`run(services)` every `interval(settings)` seconds on the consumer that holds the periodic lease."""

    name: str
    interval: Callable[[Settings], float]
    run: Callable[[Services], object]


@dataclass(frozen=True)
class TableRule:
    """How long the rows of a table that can hold personal data live, in words, and who sweeps them."""

    table: str
    rule: str
    owner: str


MEDIA = ("table", "folder", "queue", "redis", "log", "blobs")

Residues = Callable[[Session, Settings], list[tuple[str, str]]]
"""scan(session, settings) -> (problem, detail) for each residue of a store that its rules forbid."""

ErasedOwners = Callable[[Any], Any]
"""query(before) -> a SELECT of the ids of erased accounts (erased at or before `before` unless None)."""

SubjectsEnd = Callable[[Session, Sequence[str]], int]
"""fn(session, ids) deletes what names any of these items or pets (they were deleted); returns a count."""


@dataclass(frozen=True)
class Store:
    """One place in the data inventory: where personal data can rest, what it holds, what it derives from
    and how it ends. Declared once, by the domain that owns it."""

    name: str  # a table's name, or "<medium>:<name>" for the others
    medium: str  # one of MEDIA
    holds: str  # what it holds, in words ("no personal data" if so)
    source: str  # what it derives from: "account", "photo", "model", "render", "pet", "item", "none"
    ends: str  # how it ends, in words: a fixed period, or with its source
    owner: str  # the domain that declared it
    location: str = ""  # a folder under the data folder, or a key prefix
    personal_columns: tuple[str, ...] = ()
    free_text_columns: tuple[str, ...] = ()
    ends_with_subjects: SubjectsEnd | None = None
    # a table whose rows end with their account at erasure: the column naming the account
    owner_column: str | None = None
    residues: Residues | None = None

    @property
    def rule(self) -> str:
        """How it ends, as `retention check` and the README say it."""
        return self.ends


class Registry:
    """What the domains registered; frozen once the composition root has validated it."""

    def __init__(self, *, item_kinds: Sequence[ItemKind] = ()) -> None:
        # The kinds the retention policy names, in the order the sweeper visits them (the root passes them).
        self._kinds: dict[str, ItemKind] = {kind.name: kind for kind in item_kinds}
        self._items: dict[str, type[Any]] = {}
        self._erasure_hooks: dict[str, ErasureHook] = {}
        self._export_sections: dict[str, ExportSection] = {}
        self._job_handlers: dict[str, JobHandler] = {}
        self._periodic: dict[str, PeriodicTask] = {}
        self._subscribers: dict[str, list[tuple[Subscriber, BatchSubscriber | None]]] = {}
        self._stores: dict[str, Store] = {}
        self._erased_owners: ErasedOwners | None = None
        self._prompt_screens: dict[str, PromptScreen] = {}
        self._domains: list[str] = []
        self._frozen = False

    # ---- registering (domains' register functions) ----------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._frozen:
            raise RegistryError(
                f"The registry is frozen; {what} must be registered by a domain's register()."
            )

    def add_domain(self, name: str) -> None:
        """Record that a domain registered (the order is the composition root's)."""
        self._check_open(f"domain {name}")
        if name in self._domains:
            raise RegistryError(f"The domain {name} registered twice.")
        self._domains.append(name)

    def add_item_kind(self, kind: str, model: type[Any]) -> None:
        """Register the table of a kind of stored item that the retention policy names."""
        self._check_open(f"item kind {kind}")
        spec = self._kinds.get(kind)
        if spec is None:
            raise RegistryError(f"The kind {kind!r} is not in the retention policy (retention/policy.py).")
        if kind in self._items:
            raise RegistryError(
                f"The kind {kind!r} has two tables: {self._items[kind].__name__} and {model.__name__}."
            )
        for column in ITEM_COLUMNS:
            if not hasattr(model, column):
                raise RegistryError(f"The table {model.__name__} of kind {kind!r} has no {column} column.")
        if spec.clock_column and not hasattr(model, spec.clock_column):
            raise RegistryError(
                f"The table {model.__name__} of kind {kind!r} has no {spec.clock_column} column."
            )
        if getattr(model, "retention_kind", None) != kind:
            raise RegistryError(f"The table {model.__name__} must say retention_kind = {kind!r}.")
        self._items[kind] = model
        self.add_table_rule(model.__tablename__, spec.rule, owner=kind)

    def add_store(self, store: Store) -> None:
        """Declare a place in the data inventory (once: a second declaration of one name is an error)."""
        self._check_open(f"store {store.name}")
        if store.medium not in MEDIA:
            raise RegistryError(f"The store {store.name} has an unknown medium {store.medium!r}.")
        known = self._stores.get(store.name)
        if known is not None and known != store:
            raise RegistryError(f"The store {store.name} is declared twice ({known.owner}, {store.owner}).")
        self._stores[store.name] = store

    def add_table_rule(
        self,
        table: str,
        rule: str,
        *,
        owner: str,
        holds: str = "",
        source: str = "account",
        personal: Sequence[str] = (),
        free_text: Sequence[str] = (),
        ends_with_subjects: SubjectsEnd | None = None,
        owner_column: str | None = None,
        residues: Residues | None = None,
    ) -> None:
        """Declare a table in the inventory: how long its rows live (a sentence), what they hold and from
        what, which columns are personal or free text."""
        self.add_store(
            Store(
                name=table,
                medium="table",
                holds=holds or ("no personal data" if rule.startswith("no personal data") else rule),
                source=source,
                ends=rule,
                owner=owner,
                personal_columns=tuple(personal),
                free_text_columns=tuple(free_text),
                ends_with_subjects=ends_with_subjects,
                owner_column=owner_column,
                residues=residues,
            )
        )

    def set_erased_owners(self, query: ErasedOwners) -> None:
        """The one "owner erased" rule: `query()` selects the ids of erased accounts (accounts sets it)."""
        self._check_open("the erased-owners rule")
        if self._erased_owners is not None:
            raise RegistryError("The erased-owners rule is set twice.")
        self._erased_owners = query

    def add_erasure_hook(self, name: str, hook: ErasureHook) -> None:
        """Run `hook` in the transaction that erases an account."""
        self._check_open(f"erasure hook {name}")
        if name in self._erasure_hooks:
            raise RegistryError(f"The erasure hook {name} is registered twice.")
        self._erasure_hooks[name] = hook

    def add_export_section(self, name: str, fn: ExportSection) -> None:
        """Add `<name>.json`, made by fn(session, user_id), to every data export."""
        self._check_open(f"export section {name}")
        if name in self._export_sections:
            raise RegistryError(f"The export section {name} is registered twice.")
        self._export_sections[name] = fn

    def add_job_handler(self, kind: str, handler: JobHandler) -> None:
        """Run jobs of `kind` with `handler`."""
        self._check_open(f"job handler {kind}")
        if kind in self._job_handlers:
            raise RegistryError(f"Jobs of kind {kind!r} have two handlers.")
        self._job_handlers[kind] = handler

    def add_periodic(
        self, name: str, interval: Callable[[Settings], float], run: Callable[[Services], object]
    ) -> None:
        """Run `run(services)` every `interval(settings)` seconds on the periodic lease holder."""
        self._check_open(f"periodic task {name}")
        if name in self._periodic:
            raise RegistryError(f"The periodic task {name} is registered twice.")
        self._periodic[name] = PeriodicTask(name=name, interval=interval, run=run)

    def add_prompt_screen(self, name: str, screen: PromptScreen) -> None:
        """Ask `screen(prompt, settings)` about every prompt a render request carries."""
        self._check_open(f"prompt screen {name}")
        if name in self._prompt_screens:
            raise RegistryError(f"The prompt screen {name} is registered twice.")
        self._prompt_screens[name] = screen

    def subscribe(self, event: str, fn: Subscriber, *, many: BatchSubscriber | None = None) -> None:
        """Call fn(session, event) in the transaction of every `event` emitted; `many(session, events)`,
        if given, takes the events that `emit_many` emits together (it must do what fn does for each)."""
        self._check_open(f"subscriber of {event}")
        self._subscribers.setdefault(event, []).append((fn, many))

    # ---- reading (services, the consumer, the sweeper...) --------------------------------------------

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self._domains)

    @property
    def item_models(self) -> Mapping[str, type[Any]]:
        """kind -> table, in the policy's order (what refers to others first)."""
        return {kind: self._items[kind] for kind in self._kinds if kind in self._items}

    def item_model(self, kind: str) -> type[Any] | None:
        return self._items.get(kind)

    @property
    def erasure_hooks(self) -> Mapping[str, ErasureHook]:
        return dict(self._erasure_hooks)

    @property
    def export_sections(self) -> Mapping[str, ExportSection]:
        return dict(self._export_sections)

    @property
    def job_handlers(self) -> Mapping[str, JobHandler]:
        return dict(self._job_handlers)

    def job_handler(self, kind: str) -> JobHandler:
        try:
            return self._job_handlers[kind]
        except KeyError:
            raise RegistryError(f"No handler is registered for jobs of kind {kind!r}.") from None

    @property
    def periodic_tasks(self) -> tuple[PeriodicTask, ...]:
        return tuple(self._periodic.values())

    @property
    def stores(self) -> Mapping[str, Store]:
        """The data inventory: every declared place, by name."""
        return dict(self._stores)

    @property
    def table_rules(self) -> Mapping[str, TableRule]:
        """The inventory's tables, with how their rows end."""
        return {
            store.name: TableRule(table=store.name, rule=store.ends, owner=store.owner)
            for store in self._stores.values()
            if store.medium == "table"
        }

    def erased_owners(self, *, before: Any = None) -> Any:
        """A SELECT of the ids of erased accounts (at or before `before`, if given): the accounts domain's
        one rule."""
        if self._erased_owners is None:
            raise RegistryError("No domain set the erased-owners rule (accounts.register does).")
        return self._erased_owners(before)

    def stores_of(self, medium: str) -> tuple[Store, ...]:
        return tuple(store for store in self._stores.values() if store.medium == medium)

    @property
    def subject_ends(self) -> tuple[SubjectsEnd, ...]:
        """What deletes the copies (answers, messages, deliveries) that name a deleted item or pet."""
        return tuple(s.ends_with_subjects for s in self._stores.values() if s.ends_with_subjects)

    @property
    def prompt_screens(self) -> Mapping[str, PromptScreen]:
        return dict(self._prompt_screens)

    def subscribers(self, event: str) -> tuple[Subscriber, ...]:
        return tuple(fn for fn, _ in self._subscribers.get(event, ()))

    def batch_subscribers(self, event: str) -> tuple[BatchSubscriber, ...]:
        """Each subscriber of `event` as a function of many events (its own, or one event at a time)."""

        def each(fn: Subscriber) -> BatchSubscriber:
            def run(session: Session, events: Sequence[Event]) -> None:
                for one in events:
                    fn(session, one)

            return run

        return tuple(many or each(fn) for fn, many in self._subscribers.get(event, ()))

    # ---- checking ------------------------------------------------------------------------------------

    def validate(self, *, job_kinds: tuple[str, ...] = ()) -> None:
        """Fail with a sentence if a kind the policy names has no table, or a job kind has no handler."""
        missing = [name for name in self._kinds if name not in self._items]
        if missing:
            raise RegistryError(
                "The retention policy names item kinds that no domain registered a table for: "
                + ", ".join(missing)
                + ". Call registry.add_item_kind(...) in that domain's register()."
            )
        unhandled = [kind for kind in job_kinds if kind not in self._job_handlers]
        if unhandled:
            raise RegistryError(
                "No domain registered a handler for jobs of kind "
                + ", ".join(unhandled)
                + ". Call registry.add_job_handler(...) in that domain's register()."
            )

    def freeze(self) -> None:
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen


@dataclass
class Services:
    """What one running process holds: settings, database, blob store, job queue and the registry."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    blobs: BlobStore
    queue: JobQueue
    registry: Registry

    def __post_init__(self) -> None:
        # Every session knows its deployment's registry and settings (registry_of, settings_of); a
        # factory made for other settings (a test's copy, say) is remade on the same engine.
        info = self.session_factory.kw.get("info") or {}
        if info.get("settings") is not self.settings or info.get("registry") is not self.registry:
            self.session_factory = make_session_factory(
                self.engine, info={"registry": self.registry, "settings": self.settings}
            )


def registry_of(session: Session) -> Registry:
    """The registry of the deployment this session belongs to (set by the composition root)."""
    registry = session.info.get("registry")
    if not isinstance(registry, Registry):
        raise RegistryError(
            "This session was not made by petportrait.services.build_services, so it has no registry."
        )
    return registry


def registry_from(session_factory: sessionmaker[Session]) -> Registry:
    """The registry of the deployment a session factory belongs to."""
    with session_factory() as session:
        return registry_of(session)


def emit(session: Session, name: str, *, owner_id: str | None, **data: Any) -> Event:
    """Emit an event in the session's transaction: each subscriber runs now, in the same transaction."""
    event = Event(name=name, owner_id=owner_id, data=data)
    for fn in registry_of(session).subscribers(name):
        fn(session, event)
    return event


def emit_many(
    session: Session, name: str, items: Sequence[tuple[str | None, Mapping[str, Any]]]
) -> list[Event]:
    """Emit one `name` event per (owner_id, data) in the session's transaction, as `emit` would one by one;
    subscribers that registered a batch form take them all at once (a sweep emits thousands)."""
    events = [Event(name=name, owner_id=owner_id, data=data) for owner_id, data in items]
    if events:
        for many in registry_of(session).batch_subscribers(name):
            many(session, events)
    return events


def settings_of(session: Session) -> Settings:
    """The settings of the deployment this session belongs to (set by the composition root)."""
    settings = session.info.get("settings")
    if not isinstance(settings, Settings):
        raise RegistryError(
            "This session was not made by petportrait.services.build_services, so it has no settings."
        )
    return settings
