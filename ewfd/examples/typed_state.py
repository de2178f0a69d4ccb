"""Typed state: a dataclass put in the state comes back as that dataclass.

State is stored as JSON after every step, and every attempt starts from the
stored copy, so a plain dataclass would not survive the trip. Marking the class
with ``@ewfd.state_type`` makes the codec write it as a *tagged* JSON object::

    {"__ewfd_type__": "ewfd.examples.typed_state:Person", "name": "Ada", ...}

and rebuild a ``Person`` from it whenever the state is loaded: by the next
step, by a retry, by another process resuming after a crash, or by
``store.load_workflow``. Nested marked dataclasses (``Address`` here) are
rebuilt too. A tag is looked up only among the classes ``@state_type``
registered in the running process: stored data can never make the loader
import a module or build any other object, and a tag naming anything else
fails the workflow with an error naming the tag. So define state types at
module level, in modules the app imports when it loads. An unmarked dataclass
fails the step with an error naming its key.

Run it with ``python -m ewfd.examples.typed_state``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ewfd import Engine, SQLiteStore, Step, StepContext, WorkflowTemplate, state_type


@state_type
@dataclass
class Address:
    street: str
    city: str


@state_type
@dataclass
class Person:
    name: str
    age: int
    address: Address
    languages: list[str] = field(default_factory=list)


def create_person(ctx: StepContext, state: dict[str, Any]) -> None:
    state["person"] = Person(state["name"], 36, Address("12 St James's Square", "London"),
                             ["English", "French"])


def greet_person(ctx: StepContext, state: dict[str, Any]) -> None:
    person = state["person"]        # decoded from the stored JSON: a Person again
    if not isinstance(person, Person):
        raise TypeError(f"expected a Person, got {type(person).__name__}")
    state["greeting"] = f"Hello, {person.name} of {person.address.city}!"
    state["person_type"] = type(person).__name__


def build_engine(store: SQLiteStore) -> Engine:
    engine = Engine(store=store)
    engine.register("create_person", create_person)
    engine.register("greet_person", greet_person)
    engine.register_template("typed_person", WorkflowTemplate(steps=[
        Step("create_person"), Step("greet_person")]))
    return engine


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "typed.db")
        engine = build_engine(SQLiteStore(path))
        try:
            wf = engine.run(engine.new_workflow("typed_person", state={"name": "Ada Lovelace"}))
        finally:
            engine.close()

        other = SQLiteStore(path)     # a fresh store, as another process would open it
        try:
            reloaded = other.load_workflow(wf.uuid)
            raw = other.load_workflow(wf.uuid, typed=False).state["person"]
        finally:
            other.close()
    person = reloaded.state["person"]
    print(f"status: {reloaded.status}")
    print(f"step 2 saw: {reloaded.state['person_type']}")
    print(f"greeting: {reloaded.state['greeting']}")
    print(f"stored as: {raw['__ewfd_type__']}")
    print(f"reloaded: {type(person).__name__} with {type(person.address).__name__}: {person}")


if __name__ == "__main__":
    import sys

    import structlog

    # Engine logs to stderr so stdout holds only the result.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    # Run through the importable module, not ``__main__``: a state type's tag records its
    # module, and ``__main__:Person`` would mean nothing to another process.
    from ewfd.examples.typed_state import main as _main

    _main()
