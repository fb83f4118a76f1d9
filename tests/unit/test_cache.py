"""The one per-instance cache (common/cache.py): values for a time, a bounded number of them,
on a clock the tests move."""

from __future__ import annotations

from common.cache import TTLCache, clear_all


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_kept_for_its_ttl_and_no_longer():
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl=30, max_entries=10, clock=clock)
    cache.put("a", 1)
    clock.now += 29.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    cache.put("a", 2)
    assert cache.get("a") == 2 and len(cache) == 1


def test_the_ttl_may_be_read_at_each_put_and_given_per_entry():
    clock, seconds = Clock(), [5.0]
    cache: TTLCache[str, int] = TTLCache(ttl=lambda: seconds[0], max_entries=10, clock=clock)
    cache.put("five", 5)
    seconds[0] = 50
    cache.put("fifty", 50)
    cache.put("one", 1, ttl=1)
    clock.now += 2
    assert (cache.get("five"), cache.get("fifty"), cache.get("one")) == (5, 50, None)
    clock.now += 4
    assert (cache.get("five"), cache.get("fifty")) == (None, 50)


def test_the_oldest_entry_goes_when_the_cache_is_full():
    cache: TTLCache[str, int] = TTLCache(ttl=30, max_entries=3, clock=Clock())
    for n, key in enumerate("abc"):
        cache.put(key, n)
    cache.put("a", 10)  # renewed: now the newest
    cache.put("d", 3)
    assert len(cache) == 3
    assert [cache.get(k) for k in "abcd"] == [10, None, 2, 3]


def test_a_byte_bounded_cache_keeps_at_most_max_bytes_oldest_going_first():
    cache: TTLCache[str, bytes] = TTLCache(ttl=30, max_entries=100, clock=Clock(), max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.put("c", b"")  # an empty value (a missing object) counts as an entry, of no bytes
    assert cache.bytes == 8 and len(cache) == 3
    cache.put("d", b"123")  # 11 bytes: the oldest goes
    assert [cache.get(k) for k in "abcd"] == [None, b"1234", b"", b"123"] and cache.bytes == 7
    cache.put("b", b"1")  # renewed: its old size is given back
    assert cache.bytes == 4
    cache.put("e", b"12345678901")  # larger than the whole bound: not kept, nothing evicted
    assert cache.get("e") is None and len(cache) == 3 and cache.bytes == 4
    cache.pop("d")
    cache.pop_where(lambda key, value: key == "b")
    assert cache.bytes == 0 and [cache.get(k) for k in "bcd"] == [None, b"", None]
    cache.put("f", b"12")
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0


def test_load_reads_on_a_miss_only_and_keeps_none_too():
    clock, reads = Clock(), []
    cache: TTLCache[str, int | None] = TTLCache(ttl=30, max_entries=10, clock=clock)

    def loader(key: str) -> int | None:
        reads.append(key)
        return None if key == "gone" else len(key)

    assert [cache.load(k, loader) for k in ("abc", "abc", "gone", "gone")] == [3, 3, None, None]
    assert reads == ["abc", "gone"]
    clock.now += 30
    assert cache.load("abc", loader) == 3 and reads == ["abc", "gone", "abc"]


def test_pop_pop_where_clear_and_clear_all_forget():
    caches = [TTLCache[str, int](ttl=30, max_entries=10) for _ in range(2)]
    for cache in caches:
        for n, key in enumerate(("ghk_1_a", "ghk_1_b", "ghk_2_a", "other")):
            cache.put(key, n)
    first, second = caches
    first.pop("never there")
    first.pop_where(lambda key, value: key.startswith("ghk_1_") or value == 3)
    assert [first.get(k) for k in ("ghk_1_a", "ghk_1_b", "ghk_2_a", "other")] == [None, None, 2, None]
    second.clear()
    assert len(second) == 0
    second.put("x", 1)
    clear_all()
    assert len(first) == len(second) == 0
