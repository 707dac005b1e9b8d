"""The benchmark harness: interleaving, medians, ratios, and a tiny end-to-end run of the CLI
that must produce every table, the JSON file and the PNG charts, skipping what is missing."""

from __future__ import annotations

import importlib
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from prodfast.bench import __main__ as cli
from prodfast.bench import report, runner
from prodfast.bench.peers import EmbeddingCache, PureTokenBucket
from prodfast.bench.runner import FLOOR, PEER, PRODFAST, Budget, Case, Group, Result, Timed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = pathlib.Path(__file__).resolve().parent.parent

TINY = [
    "--quick",
    "--sizes",
    "100,1000",
    "--batch",
    "100",
    "--array",
    "2000",
    "--trace",
    "2000",
    "--window-fill",
    "200",
    "--rounds",
    "2",
    "--seconds",
    "0.01",
]


def _ok() -> None:
    """A check that passes (the engine's own tests time stand-ins, not real work)."""


def _logging_case(name: str, role: str, log: list[str], ops: int = 10) -> Case:
    return Case(name, role, lambda: Timed(lambda: log.append(name), ops, _ok))


def test_contenders_are_interleaved_round_robin_each_round_starting_at_the_next():
    log: list[str] = []
    group = Group("t", "op", [_logging_case(n, PEER, log) for n in "ABC"])
    results = runner.time_group(group, Budget(min_rounds=3, max_rounds=3, seconds=0.0), [])
    # one warm-up call each during setup, then every contender once a round, the first of a
    # round (which loads what they share into the CPU caches) a different one each time
    assert "".join(log) == "ABC" + "ABC" + "BCA" + "CAB"
    assert [r.contender for r in results] == ["A", "B", "C"]
    assert all(r.rounds == 3 and r.ops_per_round == 10 for r in results)


def test_median_per_op_from_the_clock(monkeypatch):
    # Each timed call reads the clock twice; elapsed times 100, 300, 200 ns for 10 ops each.
    readings = iter([0, 100, 1000, 1300, 2000, 2200])
    monkeypatch.setattr(runner.time, "perf_counter_ns", lambda: next(readings))
    group = Group("t", "op", [Case("A", PEER, lambda: Timed(lambda: None, 10, _ok))])
    (result,) = runner.time_group(group, Budget(min_rounds=3, max_rounds=3, seconds=0.0), [])
    assert result.samples == [10.0, 30.0, 20.0]
    assert result.ns_per_op == 20.0


def test_ratios_to_fastest_peer_and_floor():
    def res(name, role, ns):
        return Result("t", "op", None, name, role, ns, rounds=1, ops_per_round=1)

    results = [
        res("floor", FLOOR, 10.0),
        res("p1", PEER, 40.0),
        res("p2", PEER, 20.0),
        res("us", PRODFAST, 15.0),
    ]
    runner._ratios(results)
    assert [r.ratio_floor for r in results] == [1.0, 4.0, 2.0, 1.5]
    assert [r.ratio_fastest_peer for r in results] == [0.5, 2.0, 1.0, 0.75]
    lonely = [res("us", PRODFAST, 15.0)]
    runner._ratios(lonely)
    assert lonely[0].ratio_fastest_peer is None and lonely[0].ratio_floor is None


def test_failing_and_missing_contenders_are_skipped_with_a_note():
    log: list[str] = []

    def broken() -> Timed:
        raise ValueError("boom")

    def absent() -> Timed:
        return Timed(runner.require("prodfast_no_such_peer"), 1, _ok)

    group = Group(
        "t", "op", [_logging_case("A", PEER, log), Case("B", PEER, broken), Case("C", PEER, absent)]
    )
    report_ = runner.run_groups(
        [group], Budget(min_rounds=1, max_rounds=1, seconds=0.0), quiet=True
    )
    assert [r.contender for r in report_.results] == ["A"]
    notes = report_.skip_notes()
    assert notes[0] == "t: B skipped in op (ValueError: boom)"
    assert notes[1].startswith("t: C skipped in op (prodfast_no_such_peer is not installed")


def test_timed_close_runs_after_timing_and_after_a_failed_warm_up():
    closed: list[str] = []

    def failing_run():
        raise RuntimeError("no")

    cases = [
        Case("ok", PEER, lambda: Timed(lambda: None, 1, _ok, close=lambda: closed.append("ok"))),
        Case("bad", PEER, lambda: Timed(failing_run, 1, _ok, close=lambda: closed.append("bad"))),
    ]
    skips: list[runner.Skip] = []
    runner.time_group(Group("t", "op", cases), Budget(1, 1, 0.0), skips)
    assert sorted(closed) == ["bad", "ok"]
    assert [s.contender for s in skips] == ["bad"]


def test_seed_cache_peer_behaves_like_the_seed():
    c = EmbeddingCache(ttl=3600, max_size=2)
    c.set("a", [1.0])
    c.set("b", [2.0])
    assert c.get("a") == [1.0]  # a becomes most recent
    c.set("c", [3.0])  # evicts b, the least recently used
    assert c.get("b") is None and c.get("c") == [3.0]
    assert c.stats() == {
        "hits": 2,
        "misses": 1,
        "hit_rate": 2 / 3,
        "size": 2,
        "max_size": 2,
        "ttl": 3600,
    }


def test_pure_token_bucket_peer_follows_the_seed_table():
    now = [0.0]
    b = PureTokenBucket(10.0, 20.0, clock=lambda: now[0])
    for t, cost in ((1, 5), (2, 5), (3, 10), (4, 15)):
        now[0] = float(t)
        assert b.try_acquire(cost)
    now[0] = 5.0
    assert not b.try_acquire(20)
    assert b.tokens == pytest.approx(15.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of every area through the command line's main()."""
    out = tmp_path_factory.mktemp("bench")
    json_path = out / "results.json"
    plots = out / "plots"
    code = cli.main([*TINY, "--json", str(json_path), "--plot-dir", str(plots)])
    return code, json.loads(json_path.read_text()), plots


REDIS_AREAS = {"redis-limiters", "shared-caches"}
HAVE_REDIS = shutil.which("redis-server") is not None


def test_tiny_run_writes_json_with_every_area(tiny_run):
    code, data, _ = tiny_run
    assert code == 0
    results = data["results"]
    expected = set(cli.AREAS) if HAVE_REDIS else set(cli.AREAS) - REDIS_AREAS
    assert {r["area"] for r in results} == expected
    assert {"caches", "decorators", "limiters", "stats", "monitoring"} <= expected
    assert {r["n"] for r in results if r["area"] == "caches"} == {100, 1000}
    for r in results:
        assert r["ns_per_op"] > 0 and r["rounds"] >= 1
        if r["role"] == "floor":
            assert r["ratio_floor"] == 1.0
    floors = {
        (r["area"], r["operation"], r["n"]): r["contender"] for r in results if r["role"] == "floor"
    }
    assert floors[("caches", "hit c[k]", 100)] == "dict"
    assert floors[("limiters", "try_acquire()", None)] == "time.monotonic()"
    assert floors[("stats", "batch mean+variance (2,000 values)", None)] == "numpy mean()+var()"
    env = data["environment"]
    assert env["python"] and env["cpu"] and env["command"].startswith("python -m prodfast.bench")
    assert data["settings"]["sizes"] == [100, 1000]


def test_tiny_run_every_case_passes_its_check(tiny_run):
    """Every case of every area has a check() and passes it; the only contenders left out are
    those that cannot run here, each with its reason."""
    _, data, _ = tiny_run
    failed = [n for n in data["notes"] if "failed" in n or "Error" in n]
    assert failed == []
    for note in data["notes"]:
        assert "redis-py's client-side cache needs Redis 7.4" in note or "not installed" in note or (
            not HAVE_REDIS and "no redis-server" in note
        ), note


def test_a_case_whose_run_does_the_wrong_work_fails_its_check(monkeypatch, capsys):
    pure = importlib.import_module("prodfast._core_py")
    monkeypatch.setattr(pure.LRUCache, "get", lambda self, key, default=None: None)
    # the run goes on (the others are still timed), and its exit status says a case is broken
    assert cli.main([*TINY, "--area", "caches", "--sizes", "100"]) == 1
    out, err = capsys.readouterr()
    assert (
        "caches: prodfast LRUCache [py] skipped in hit c.get(k) (failed its check: "
        "100 of 100 hits did not return the stored value)" in out
    )
    assert "prodfast LRUCache [cy]" in out
    assert "1 case(s) failed their check or raised (see the notes): exit status 1" in err


def test_a_case_without_a_check_is_refused():
    with pytest.raises(runner.CheckFailed, match="no check"):
        Timed(lambda: None, 1).first_run()
    group = Group("t", "op", [Case("A", PEER, lambda: Timed(lambda: None, 1))])
    skips: list[runner.Skip] = []
    assert runner.time_group(group, Budget(1, 1, 0.0), skips) == []
    assert skips[0].reason == "failed its check: this case has no check()"


def test_redis_areas_without_a_server_are_skipped_with_a_note(monkeypatch, capsys):
    from prodfast.bench import servers

    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    assert cli.main([*TINY, "--area", "redis-limiters", "--area", "shared-caches"]) == 0
    out = capsys.readouterr().out
    assert "redis-limiters: prodfast RedisTokenBucket skipped in 2 operations (no redis-server on PATH: run" in out
    assert "shared-caches: prodfast TieredCache.get [cy] skipped in hit on the local tier (no redis-server" in out
    assert "== redis-limiters ==" in out  # the in-memory floor of the lease group still runs


def test_pytest_wrappers_list_every_case_of_every_area():
    """bench/ defines no workload of its own: its tests are the cases of prodfast.bench."""
    from prodfast.bench.runner import Settings

    expected = 0
    for area in cli.AREAS.values():
        expected += sum(len(g.cases) for g in area.groups(Settings.smoke()))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--benchmark-disable",
         "-p", "no:cacheprovider", "bench", "-k", "not test_cache_memory"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    ids = [line for line in done.stdout.splitlines() if "::test_" in line]
    assert len(ids) == expected
    assert any("hit on the local tier | prodfast TieredCache.get [cy]" in i for i in ids)


def test_tiny_run_draws_every_chart(tiny_run):
    _, _, plots = tiny_run
    names = sorted(p.name for p in plots.iterdir())
    expected = [
        "caches_n100.png",
        "caches_n1000.png",
        "caches_scaling.png",
        "decorators.png",
        "limiters.png",
        "monitoring.png",
        "redis-limiters.png",
        "shared-caches.png",
        "stats.png",
    ]
    if not HAVE_REDIS:
        expected = [n for n in expected if n[: -len(".png")] not in REDIS_AREAS]
    assert names == expected
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000


def test_tables_on_stdout_progress_on_stderr(capsys):
    assert cli.main([*TINY, "--area", "limiters"]) == 0
    out, err = capsys.readouterr()
    assert "== limiters ==" in out and "== caches ==" not in out
    header = next(line for line in out.splitlines() if line.startswith("operation"))
    assert header.split() == [
        "operation",
        "N",
        "contender",
        "ns/op",
        "vs",
        "fastest",
        "peer",
        "vs",
        "floor",
    ]
    assert "time.monotonic() (floor)" in out
    assert "#1 limiters:" in err and "done in" in err
    assert "== limiters ==" not in err


def test_missing_peer_is_skipped_with_a_note(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "cachebox", None)  # makes `import cachebox` fail
    path = tmp_path / "r.json"
    assert cli.main([*TINY, "--area", "caches", "--sizes", "100", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    data = json.loads(path.read_text())
    assert not [r for r in data["results"] if r["contender"].startswith("cachebox")]
    assert [r for r in data["results"] if r["contender"] == "lru-dict LRU"]
    note = "caches: cachebox LRUCache skipped in 5 operations (cachebox is not installed"
    assert any(n.startswith(note) for n in data["notes"])
    assert note in out


def test_missing_prodfast_class_is_skipped_with_a_note(monkeypatch, capsys):
    pure = importlib.import_module("prodfast._core_py")
    monkeypatch.delattr(pure, "RunningStats", raising=False)
    assert cli.main([*TINY, "--area", "stats"]) == 0
    out = capsys.readouterr().out
    assert "stats: prodfast RunningStats [py] skipped in push(x): mean/variance" in out
    assert "prodfast._core_py has no RunningStats" in out
    assert "runstats Statistics (peer)" in out


def test_table_keeps_one_operation_together():
    rs = [
        Result(
            "caches",
            "hit",
            1000,
            "dict",
            FLOOR,
            20.0,
            3,
            100,
            ratio_fastest_peer=0.5,
            ratio_floor=1.0,
        ),
        Result(
            "caches", "hit", 1000, "x", PEER, 40.0, 3, 100, ratio_fastest_peer=1.0, ratio_floor=2.0
        ),
        Result(
            "caches",
            "hit",
            10**6,
            "x",
            PEER,
            1234.5,
            3,
            100,
            ratio_fastest_peer=None,
            ratio_floor=None,
        ),
    ]
    lines = report.table(rs).splitlines()
    assert lines[2].split() == ["hit", "1e3", "dict", "(floor)", "20.0", "0.50x", "1.00x"]
    assert lines[3].split() == ["x", "(peer)", "40.0", "1.00x", "2.00x"]
    assert lines[4].split() == ["hit", "1e6", "x", "(peer)", "1,234.5", "-", "-"]


def test_bad_arguments_are_rejected(capsys):
    for argv in (["--area", "gpu"], ["--sizes", "ten"], ["--rounds", "0"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'gpu'" in err and "--sizes wants numbers" in err


def test_module_and_console_script_entry_points():
    (entry,) = [
        e for e in metadata.entry_points(group="console_scripts") if e.name == "prodfast-bench"
    ]
    assert entry.value == "prodfast.bench.__main__:main"
    assert entry.load() is cli.main
    done = subprocess.run(
        [sys.executable, "-m", "prodfast.bench", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--plot-dir" in done.stdout and "--quick" in done.stdout


def test_scaling_rows_compare_ratio_to_floor_across_sizes():
    def res(name, role, n, ratio):
        return Result("caches", "hit", n, name, role, 10.0 * ratio, 3, 100, ratio_floor=ratio)

    rs = [
        res("dict", FLOOR, 1000, 1.0),
        res("us", PRODFAST, 1000, 1.2),
        res("peer", PEER, 1000, 2.0),
        res("dict", FLOOR, 10**6, 1.0),
        res("us", PRODFAST, 10**6, 1.5),
        res("peer", PEER, 10**5, 9.0),  # not timed at the largest size: left out
    ]
    (row,) = report.scaling_rows(rs)
    assert row["contender"] == "us" and row["n_small"] == 1000 and row["n_large"] == 10**6
    assert row["growth"] == pytest.approx(1.25)
    text = report.scaling_table([row])
    assert text.splitlines()[0].split() == [
        "operation",
        "contender",
        "vs",
        "floor",
        "N=1e3",
        "vs",
        "floor",
        "N=1e6",
        "growth",
    ]
    assert text.splitlines()[2].split() == ["hit", "us", "1.20x", "1.50x", "1.25x"]
    assert report.scaling_rows([r for r in rs if r.n == 1000]) == []


def test_tiny_run_reports_scaling_of_caches(tiny_run):
    _, data, _ = tiny_run
    rows = data["scaling"]["caches"]
    assert rows and {r["n_small"] for r in rows} == {100} and {r["n_large"] for r in rows} == {1000}
    assert "dict" not in {r["contender"] for r in rows}
    assert data["scaling"]["limiters"] == []


def test_int_keys_are_labelled_and_new_inserts_really_evict():
    from prodfast.bench.caches import Workload

    w = Workload.make(1000, 100, "int")
    assert all(type(k) is int and k > 256 for k in w.originals)
    assert set(w.hits) <= set(w.originals) and not set(w.misses) & set(w.originals)
    stream = [k for batch in w.fresh for k in batch]
    assert len(stream) == len(set(stream)) == 1100 and not set(stream) & set(w.originals)
    # An LRU of maxsize N fed the stream cyclically sees only new keys, each evicting one.
    from collections import OrderedDict

    lru = OrderedDict.fromkeys(w.originals)
    for _ in range(3):
        for k in stream:
            assert k not in lru
            lru[k] = None
            lru.popitem(last=False)
    with pytest.raises(ValueError, match="keys must be 'str' or 'int'"):
        Workload.make(10, 10, "bytes")


def test_dict_floor_for_insert_evict_stays_at_n_entries():
    from prodfast.bench import caches

    w = caches.Workload.make(1000, 100)
    stream = [k for batch in w.fresh for k in batch]
    d = dict.fromkeys(stream[:1000])
    run = caches._fifo_run(d, w)
    for calls in range(1, 26):  # more than two trips round the 11 batches of the stream
        run()
        end = (1000 + 100 * calls) % len(stream)
        window = [stream[(end - 1000 + i) % len(stream)] for i in range(1000)]
        assert list(d) == window


def test_contender_failing_midway_is_dropped_with_a_note():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 3:  # warm-up and first round pass, the second round fails
            raise KeyError("gone")

    cases = [
        Case("flaky", PEER, lambda: Timed(flaky, 1, _ok)),
        Case("ok", PEER, lambda: Timed(lambda: None, 1, _ok)),
    ]
    skips: list[runner.Skip] = []
    results = runner.time_group(Group("t", "op", cases), Budget(4, 4, 0.0), skips)
    assert [r.contender for r in results] == ["ok"] and results[0].rounds == 4
    assert len(calls) == 3
    assert [(s.contender, s.reason) for s in skips] == [
        ("flaky", "failed while timed: KeyError: 'gone'")
    ]


def test_missing_matplotlib_skips_charts_with_a_note(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    plots = tmp_path / "plots"
    assert cli.main([*TINY, "--area", "stats", "--plot-dir", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "charts skipped (matplotlib is not installed" in out
    assert "== stats ==" in out
    assert not plots.exists() or not list(plots.iterdir())


def test_charts_say_where_they_are_and_what_run_made_them(capsys, tmp_path):
    from prodfast.bench import plots

    assert cli.main([*TINY, "--area", "limiters", "--plot-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"charts written to {tmp_path}: limiters.png" in out
    env = report.environment(["--quick"])
    text = plots.footer(env)
    for part in (
        env["date"],
        env["cpu"],
        f"Python {env['python']}",
        "python -m prodfast.bench --quick",
    ):
        assert str(part) in text
    assert plots.footer(None) == ""


def _cache_report():
    spec = importlib.util.spec_from_file_location("cache_report", ROOT / "bench" / "cache_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("suffix", ["", " (int keys)"])
def test_cache_report_checks_the_same_policy_goals_for_either_key_type(tmp_path, suffix):
    def row(operation, n, contender, ns):
        return {
            "area": "caches",
            "operation": operation + suffix,
            "n": n,
            "contender": contender,
            "ns_per_op": ns,
        }

    results = [
        row("insert+evict · RR", 1000, "prodfast RRCache [cy]", 60.0),
        row("insert+evict · RR", 1000, "cachebox RRCache", 50.0),
        row("hit c.get(k) · FIFO", 1_000_000, "prodfast FIFOCache [cy]", 70.0),
        row("hit c.get(k) · FIFO", 1_000_000, "dict", 65.0),
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"results": results}))
    report = _cache_report()
    misses = report.misses_of(report.load(str(path)))
    assert "prodfast RRCache [cy] insert+evict · RR N=1000: 60.0 > cachebox RRCache 50.0" in misses
    assert "prodfast FIFOCache [cy] hit c.get(k) · FIFO N=1000000: 70.0 > dict 65.0" in misses
    assert len(misses) == 2
