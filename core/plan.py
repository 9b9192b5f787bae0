"""Plans: the steps a backend needs, each carrying how to undo it.

A backend turns a network or port into a :class:`Plan` (a list of :class:`Step`); the core's
executor (:mod:`virtnet.apply`) runs it. Before a step runs, its :class:`Undo` record is
written to a journal, so a failure half-way, or a crash, is rolled back the same way for every
backend. Stopping a network or unplugging a port is running its journal backwards.

An undo record is plain data (an action name and JSON-able arguments) because it must survive
the process that wrote it. Actions are looked up by name in the registry that core services and
plugins fill through the ``virtnet_undo_actions`` hook. Every undo action must be idempotent:
undoing something already gone is success.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from virtnet.apply import ApplyContext


@dataclass(frozen=True)
class Undo:
    """How to reverse one step: ``action`` names a registered undo action, ``args`` its input."""

    action: str
    args: dict[str, Any] = field(default_factory=dict)
    #: The ownership label of what the step makes (:mod:`virtnet.ownership`); the executor
    #: fills it in from ``ApplyContext.owner`` when it journals the record, and sets it back
    #: on the context when it runs the undo, so the action removes only what carries it.
    owner: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action, "args": self.args}
        if self.owner is not None:
            data["owner"] = self.owner
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Undo:
        owner = data.get("owner")
        return cls(
            action=str(data["action"]),
            args=dict(data.get("args", {})),
            owner=str(owner) if owner is not None else None,
        )


UndoAction = Callable[["ApplyContext", dict[str, Any]], None]


class Step(ABC):
    """One change to the host. Subclasses are small value objects.

    ``undo()`` is called *before* ``apply()``, so it must be computable from the step alone.
    ``apply()`` raises on failure; the executor then undoes this step (its undo is already
    journalled and must tolerate a half-done apply) and every earlier one.
    """

    @abstractmethod
    def describe(self) -> str:
        """One line for ``--dry-run`` output and logs, e.g. ``create bridge virbr0``."""

    @abstractmethod
    def undo(self) -> Undo | None:
        """The record that reverses this step, or None if it changes nothing to reverse."""

    @abstractmethod
    def apply(self, ctx: ApplyContext) -> None:
        """Make the change, through ``ctx``'s services."""

    def repair(self, ctx: ApplyContext) -> None:  # noqa: B027 - optional, no-op by default
        """Restore what ``apply()`` made if something outside virtnet removed it (drift).

        Runs on a live network, with the journal untouched (the object keeps its name, so its
        undo record stays right): a step checks what is there and redoes only what is
        missing, never disturbing what still works (a VM holding a tap must keep it). The
        default does nothing: a step that changes nothing lasting has nothing to restore.
        """

    def check(self, ctx: ApplyContext) -> None:  # noqa: B027 - optional, no-op by default
        """Refuse, read-only, before anything is journalled (e.g. the bridge name is taken).

        A step whose precondition fails must not leave an undo record behind: undoing
        "create bridge br0" after finding a *foreign* br0 would delete someone else's bridge.
        The executor runs ``check`` right before the step, after the earlier steps applied.
        """


@dataclass
class Plan:
    """An ordered list of steps, plus facts the backend wants recorded with the result.

    ``info`` ends up in the network's or port's runtime status (``net-info --json``), e.g. the
    bridge name or the dnsmasq pid file, so drift checks and users can find what was made.
    """

    steps: list[Step] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, *steps: Step) -> Plan:
        self.steps.extend(steps)
        return self

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def describe(self) -> list[str]:
        return [step.describe() for step in self.steps]


@dataclass
class CallStep(Step):
    """A step made of two plain functions; handy for plugins and tests.

    ``undo_action`` must be registered (``virtnet_undo_actions``) under that name.
    """

    text: str
    run: Callable[[ApplyContext], None]
    undo_action: str | None = None
    undo_args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return self.text

    def undo(self) -> Undo | None:
        return Undo(self.undo_action, self.undo_args) if self.undo_action else None

    def apply(self, ctx: ApplyContext) -> None:
        self.run(ctx)
