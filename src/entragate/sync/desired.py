"""One ACL's desired ranges and their placement, kept up to date change by change.

The writer does not re-plan every grant on every wake-up (docs/design.md#placement):
a grant, revoke, renewal or expiry updates :class:`AclDesired` in O(log n), and only
a full reconcile (:meth:`AclDesired.rebuild`, at start and on every verify pass)
reads everything. Each shard location is a :class:`Shard` holding the granted
ranges placed in it, uncollapsed; the list sent to Graph is collapsed per shard
when the shard is written, so it covers exactly what was granted.

Placement rules, in order, for a range that nobody held before:

1. inside a range already placed: the same shard (its addresses are there already);
2. around ranges already placed: the shard of the first of them;
3. the *hot* shard: one already due to be written that has room;
4. another open shard with room;
5. the next shard not yet opened (Graph creates it at its first write, paced);
6. a shard with room whose writes are failing for good (parked);
7. a shard whose collapsed list still has room (many neighbouring addresses).

A placed range never moves: it stays in its shard until its last holder ends.
Room counts ranges as granted (``max_ranges`` per shard): collapsing only lowers the
number Graph receives, so a shard with room always fits one more.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

from entragate.sync.cidrs import collapse_cidrs, net_bounds
from entragate.sync.shard import Shard, Ticket

STATIC_HOLDER = "\x00static"  # no user can be called this: user names refuse control characters

Key = tuple[int, int, int]  # (IP version, first address, prefix length)


@dataclass
class _Placed:
    """The ranges placed in any shard, searchable by address."""

    where: dict[str, int] = field(default_factory=dict)  # cidr -> shard index
    by_key: dict[Key, str] = field(default_factory=dict)
    starts: list[Key] = field(default_factory=list)  # sorted, unless ``unsorted``
    unsorted: bool = False

    def covering(self, version: int, first: int, prefix: int) -> int | None:
        """The shard of a placed range that contains this network, if any."""
        bits = 32 if version == 4 else 128
        for length in range(prefix - 1, -1, -1):
            start = first & ~((1 << (bits - length)) - 1)
            cidr = self.by_key.get((version, start, length))
            if cidr is not None:
                return self.where[cidr]
        return None

    def inside(self, version: int, first: int, last: int) -> int | None:
        """The shard of a placed range inside this network, if any."""
        if self.unsorted:
            self.starts.sort()
            self.unsorted = False
        k = bisect.bisect_left(self.starts, (version, first, 0))
        if k < len(self.starts):
            v, start, _ = self.starts[k]
            if v == version and start <= last:
                return self.where[self.by_key[self.starts[k]]]
        return None


class AclDesired:
    """Desired ranges of one ACL per shard, and which shards have changes pending."""

    def __init__(
        self,
        name: str,
        static: Sequence[str],
        *,
        max_ranges: int,
        max_locations: int,
        placeholder: str,
    ) -> None:
        self.name = name
        self.static = [str(ipaddress.ip_network(s)) for s in static]
        self.max_ranges = max_ranges
        self.max_locations = max_locations
        self.placeholder = placeholder
        self.shards: list[Shard] = []
        self._reset()

    def _reset(self) -> None:
        self.shards = [Shard(self.name, i, self.placeholder) for i in range(self.max_locations)]
        self.shards[0].opened = True  # NAME always exists: it holds the placeholder when empty
        self._keys: set[tuple[str, str]] = set()  # (user, cidr) of every active grant
        self._holders: dict[str, int] = {}  # cidr -> how many grants (or static) hold it
        self._placed = _Placed()
        self.overflow: set[str] = set()  # held but fits nowhere (refused at grant time)
        self.grants = 0

    # ------------------------------------------------------------------ events

    def add(self, user: str, cidr: str, now: float, created_at: datetime | None = None) -> None:
        """A grant (or the static list) holds ``cidr``; a renewal changes nothing here."""
        key = (user, cidr)
        if key in self._keys:
            return
        self._keys.add(key)
        if user != STATIC_HOLDER:
            self.grants += 1
        held = self._holders.get(cidr, 0)
        self._holders[cidr] = held + 1
        if held == 0:
            self._place(cidr, now, created_at)

    def remove(self, user: str, cidr: str, now: float) -> None:
        """A grant of ``cidr`` ended (revoke, expiry, flush)."""
        key = (user, cidr)
        if key not in self._keys:
            return
        self._keys.discard(key)
        self.grants -= 1
        held = self._holders[cidr] - 1
        if held:
            self._holders[cidr] = held
            return
        del self._holders[cidr]
        self._unplace(cidr, now)

    def rebuild(
        self,
        grants: Iterable[tuple[str, str, datetime]],
        applied: Sequence[set[str] | None],
        now: float,
    ) -> None:
        """Start over from every active grant, sticking to what Entra holds (``applied[i]``
        for shard ``i``; None where the location is unknown). Shards that then differ from
        Entra are pending: removals where Entra holds more, additions where it lacks some."""
        self._reset()
        rows = list(grants)
        keys = {(user, cidr) for user, cidr, _ in rows}
        self.grants = len(keys)
        keys.update((STATIC_HOLDER, s) for s in self.static)
        self._keys = keys
        self._holders = dict(Counter(cidr for _, cidr in keys))
        # each range's oldest grant (static ranges first): the order new ranges are placed in
        oldest: dict[str, datetime | None] = {
            cidr: created for _, cidr, created in sorted(rows, key=itemgetter(2), reverse=True)
        }
        oldest.update((s, None) for s in self.static)
        exact = {text: i for i, held in enumerate(applied) if held for text in held}
        remote: _RemoteIndex | None = None  # built only if some range is not held verbatim
        new: list[tuple[datetime | None, str]] = []
        placed = self._placed
        for cidr, created_at in oldest.items():
            index = exact.get(cidr)
            bounds = net_bounds(cidr)
            if index is None:
                remote = remote or _RemoteIndex(applied, self.placeholder)
                index = remote.holder(bounds[0], bounds[1], bounds[2])
            if index is None:
                new.append((created_at, cidr))
                continue
            key = (bounds[0], bounds[1], bounds[3])
            placed.where[cidr] = index
            placed.by_key[key] = cidr
            placed.starts.append(key)
            self.shards[index].ranges.add(cidr)
        placed.unsorted = True  # sorted once, when first searched or at the end
        for index, shard in enumerate(self.shards):
            if applied[index] is not None or shard.ranges:
                shard.opened = True
        new.sort(key=lambda item: (item[0] is not None, item[0] or now, item[1]))
        for created_at, cidr in new:
            self._place(cidr, now, created_at, keep_sorted=False)
        placed.starts.sort()
        placed.unsorted = False
        for index, shard in enumerate(self.shards):
            shard.compare(applied[index], now)

    # ------------------------------------------------------------------ placement

    def _place(
        self, cidr: str, now: float, created_at: datetime | None, *, keep_sorted: bool = True
    ) -> None:
        version, first, last, prefix = net_bounds(cidr)
        index = self._placed.covering(version, first, prefix)
        if index is None and prefix < (32 if version == 4 else 128):  # a host holds only itself
            index = self._placed.inside(version, first, last)
        if index is None:
            index = self._choose()
        if index is None:
            self.overflow.add(cidr)
            return
        key = (version, first, prefix)
        self._placed.where[cidr] = index
        self._placed.by_key[key] = cidr
        if keep_sorted:
            bisect.insort(self._placed.starts, key)
        else:  # a rebuild sorts them once at the end
            self._placed.starts.append(key)
            self._placed.unsorted = True
        shard = self.shards[index]
        shard.opened = True
        shard.put(cidr, now, created_at)

    def _choose(self) -> int | None:
        # A shard whose writes fail for good (parked) takes new ranges only when nothing else can.
        room = [s for s in self.shards if s.opened and len(s.ranges) < self.max_ranges]
        usable = [s for s in room if not s.blocked]
        hot = next((s for s in usable if s.dirty), None)
        if hot is not None:
            return hot.index
        if usable:
            return usable[0].index
        unopened = next((s for s in self.shards if not s.opened), None)
        if unopened is not None:
            return unopened.index
        if room:
            return room[0].index
        squeezed = next((s for s in self.shards if len(s.ranges_to_write()) < self.max_ranges), None)
        return None if squeezed is None else squeezed.index

    def _unplace(self, cidr: str, now: float) -> None:
        index = self._placed.where.pop(cidr, None)
        if index is None:
            self.overflow.discard(cidr)
            return
        version, first, _, prefix = net_bounds(cidr)
        key = (version, first, prefix)
        del self._placed.by_key[key]
        k = bisect.bisect_left(self._placed.starts, key)
        del self._placed.starts[k]
        self.shards[index].drop(cidr, now)
        for waiting in sorted(self.overflow)[:1]:  # room freed: place one that waited
            self.overflow.discard(waiting)
            self._place(waiting, now, None)

    # ------------------------------------------------------------------ reading

    def desired(self) -> list[str]:
        """All desired ranges of the ACL, collapsed (status, tests)."""
        return collapse_cidrs(self._holders)

    def location_of(self, cidr: str) -> int | None:
        return self._placed.where.get(cidr)

    def take(self, index: int) -> Ticket:
        """What to write to shard ``index`` now; settle it with :meth:`Shard.settle`."""
        return self.shards[index].take()


class _RemoteIndex:
    """What Entra holds in each shard, searchable by address (used by :meth:`AclDesired.rebuild`)."""

    def __init__(self, applied: Sequence[set[str] | None], placeholder: str) -> None:
        spans: list[tuple[int, int, int, int]] = []
        for index, held in enumerate(applied):
            for text in held or ():
                if text == placeholder:
                    continue
                try:
                    version, first, last, _ = net_bounds(text)
                except ValueError:
                    continue  # junk (hand-edited): never sticky, removed by the next write
                spans.append((version, first, last, index))
        spans.sort()
        self._spans = spans
        self._starts = [(v, first) for v, first, _, _ in spans]

    def holder(self, version: int, first: int, last: int) -> int | None:
        k = bisect.bisect_right(self._starts, (version, first)) - 1
        if k >= 0:
            v, start, end, index = self._spans[k]
            if v == version and start <= first and last <= end:
                return index
        return None
