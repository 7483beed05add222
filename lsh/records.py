"""The records the stages pass to each other through files: a round's pool and a training's summary.

Each is a dataclass with `from_json`/`to_json`, so a reader sees the fields a file holds
and a typo is an AttributeError, not a silently missing key. The JSON layout is what the
README describes; `to_json` writes the same keys `from_json` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class PoolEntry:
    """One slot of a round: which candidate trains there, from where, and to which epoch."""

    slot: int
    candidate: str  # c000, c001, ... in order of first appearance
    config: dict  # init, death, growth, redistribution, death_rate
    parent: str | None  # the checkpoint a survivor continues from; None: trained from scratch
    epochs_before: int
    epochs_after: int

    @classmethod
    def from_json(cls, data: dict) -> "PoolEntry":
        return cls(**data)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tried:
    """A configuration the search has trained (proposals must differ from all of them)."""

    candidate: str
    config: dict

    @classmethod
    def from_json(cls, data: dict) -> "Tried":
        return cls(data["candidate"], data["config"])

    def to_json(self) -> dict:
        return {"candidate": self.candidate, "config": self.config}


@dataclass(frozen=True)
class Pool:
    """A round's pool (`round` an int), or the final pool (`round` "final"); empty slots are None."""

    round: int | str
    slots: tuple[PoolEntry | None, ...]
    tried: tuple[Tried, ...]
    next_id: int  # the number of the next new candidate

    @property
    def entries(self) -> list[PoolEntry]:
        return [e for e in self.slots if e is not None]

    def entry(self, slot: int) -> PoolEntry | None:
        return self.slots[slot] if slot < len(self.slots) else None

    @classmethod
    def from_json(cls, data: dict) -> "Pool":
        return cls(data["round"], tuple(PoolEntry.from_json(e) if e else None for e in data["slots"]),
                   tuple(Tried.from_json(t) for t in data["tried"]), data["next_id"])

    def to_json(self) -> dict:
        return {"round": self.round, "slots": [e.to_json() if e else None for e in self.slots],
                "tried": [t.to_json() for t in self.tried], "next_id": self.next_id}


@dataclass(frozen=True)
class Summary:
    """A training folder's summary.json: how the run ended and its best epoch."""

    status: str  # ok | diverged | empty (a slot without a candidate)
    epochs: int  # the last epoch reached
    target_epochs: int | None = None
    valid_ppl: float | None = None  # at the last epoch
    best_epoch: int | None = None
    best_valid_ppl: float | None = None
    reason: str | None = None  # why it diverged
    seconds: float = 0.0
    epochs_trained: int = 0  # by this job (a survivor's earlier epochs were trained before)
    test_ppl: float | None = None  # at the best epoch, with --test
    test_epoch: int | None = None
    candidate: str | None = None  # a search slot's candidate and configuration
    config: dict | None = field(default=None)

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("valid_ppl", "best_epoch", "best_valid_ppl")}

    @property
    def ok(self) -> bool:
        return self.status == "ok"
