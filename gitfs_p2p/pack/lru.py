"""A least-recently-used cache bounded by a total weight (bytes, entries, ...)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["LRU"]


class LRU(OrderedDict):
    """An OrderedDict bounded by a total weight, evicting least recently used."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget
        self.weight = 0
        self._weights: dict = {}

    def get_hit(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key, value, weight: int) -> None:
        """Keep value under key (unless key is here already), evicting the least recently
        used while over budget (the newest is always kept)."""
        self.put_many(((key, value, weight),))

    def put_many(self, items) -> None:
        """put(key, value, weight) for each (key, value, weight) of items, in order (one call
        for a pack's objects: the same evictions, without a call per object)."""
        weights = self._weights
        budget = self.budget
        total = self.weight
        try:
            for key, value, weight in items:
                if key in self:
                    continue
                self[key] = value
                weights[key] = weight
                total += weight
                while total > budget and len(self) > 1:
                    old, _ = self.popitem(last=False)
                    total -= weights.pop(old)
        finally:
            self.weight = total
