"""The tuple log on its own (pastset.core.tuples): indices, takes, give-backs, axe, delta, replay."""

from __future__ import annotations

from pastset.core.tuples import TupleLog


def filled(count: int) -> TupleLog:
    log = TupleLog()
    for i in range(count):
        log.append((i,))
    return log


def test_indices_count_up_and_unobserved_tuples_are_taken_oldest_first() -> None:
    log = TupleLog()
    assert [log.append(("a",)), log.append(("b",)), log.append(("c",))] == [0, 1, 2]
    assert (log.lowest(), log.last, log.unobserved()) == (0, 3, 3)
    assert log.take(2) == ([0, 1], [("a",), ("b",)])
    assert (log.lowest(), log.unobserved(), log.recent) == (2, 1, 1)
    assert log.take(5) == ([2], [("c",)])  # at most what is there
    assert log.take(1) == ([], []) and log.recent == 2
    assert log.get(1) == ("b",)  # indexed reads never touch first


def test_a_tuple_given_back_is_unobserved_again_at_its_own_index_and_goes_first() -> None:
    log = filled(5)
    log.take(3)
    assert log.restore(1) and log.restore(0)
    assert not log.restore(1)  # back already
    assert not log.restore(3)  # never taken
    assert (log.lowest(), log.unobserved(), log.returned) == (0, 4, [0, 1])
    assert log.take(3) == ([0, 1, 3], [(0,), (1,), (3,)])


def test_axe_frees_only_observed_tuples_and_reports_whether_it_freed_any() -> None:
    log = filled(4)
    log.take(2)
    assert not log.free(0)
    assert log.free(10)  # bounded by the lowest unobserved index
    assert (log.base, log.data) == (2, [(2,), (3,)])
    assert log.get(3) == (3,) and not log.restore(1)  # freed: cannot come back
    log.replace(2, ("two",))
    assert log.get(2) == ("two",)


def test_delta_bounds_the_unobserved_tuples_and_none_zero_or_less_mean_unbounded() -> None:
    log = filled(2)
    for unbounded in (None, 0, -1):
        log.delta = unbounded
        assert log.room()
    log.delta = 2
    assert not log.room()
    log.take(1)
    assert log.room()


def test_clear_releases_everything_and_keeps_the_numbering() -> None:
    log = filled(3)
    log.take(1)
    log.restore(0)
    log.clear()
    assert (log.data, log.returned, log.base, log.lowest(), log.last, log.unobserved()) == ([], [], 3, 3, 3, 0)
    assert log.append(("next",)) == 3


def test_replaying_the_records_of_the_operations_rebuilds_the_same_log() -> None:
    live = TupleLog()
    records: list[tuple] = []
    for i in range(5):
        live.append((i,))
        records.append(("move", (i,)))
    live.take(1)
    records.append(("observe",))
    live.take(2)
    records.append(("observe", 2))
    live.restore(1)
    records.append(("unobserve", 1))
    live.delta = 3
    records.append(("delta", 3))
    live.free(1)
    records.append(("axe", 1))
    live.replace(4, ("four",))
    records.append(("set", 4, ("four",)))
    records.append(("set", 0, ("freed",)))  # a freed tuple is not replaced
    replayed = TupleLog()
    for kind, *args in records:
        replayed.replay(kind, *args)
    fields = ("data", "base", "first", "returned", "last", "recent", "delta")
    assert [getattr(replayed, f) for f in fields] == [getattr(live, f) for f in fields]
