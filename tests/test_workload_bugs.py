"""A workload's own bug -- a handle used after its free, a free twice, a yield of something
that is not an operation -- is a WorkloadError naming the workload, the thread and the
operation: one line and exit status 2 on the command line.  Errors that are not the
workload's (a call()'s own ValueError) go on unchanged."""

import pytest

from kalloc import hookimpl
from kalloc.cli import main
from kalloc.errors import WorkloadError
from kalloc.harness import RunSpec, run_one
from kalloc.workload import Workload, cache_alloc, call, free, get, malloc, put, read, realloc, work, write

# what the thread does after it malloc'ed handle h and freed it: kind -> (operation, message)
BUGS = {
    "write": (lambda h, q: write(h, b"x"), "write(0, <1 bytes>): handle 0 is not live"),
    "read": (lambda h, q: read(h, 4), "read(0, 4): handle 0 is not live"),
    "realloc": (lambda h, q: realloc(h, 100), "realloc(0, 100, M_WAITOK): handle 0 is not live"),
    "free": (lambda h, q: free(h), "free(0): handle 0 is not live: freed already"),
    "never": (lambda h, q: free(7), "free(7): handle 7 was never returned by malloc"),
    "none": (lambda h, q: None, "None: not an operation"),
    "name": (lambda h, q: "free", "'free': not an operation"),
    "short": (lambda h, q: (0,), "(0,): not an operation"),
    "size": (lambda h, q: malloc("64", "devbuf"), "malloc('64', 'devbuf', M_WAITOK): the size must be an integer"),
    "queue": (lambda h, q: get("rxq"), "get('rxq'): the queue must be one of ctx.queue(name)"),
    "cache": (lambda h, q: cache_alloc("", 64), "cache_alloc('', 64, M_WAITOK, 0, 0): the cache must be a name"),
}


class Buggy(Workload):
    NAME = "buggy"
    DESCRIPTION = "a workload with the bug its parameter names"
    PARAMS = {"bug": "write"}

    def threads(self, ctx):
        def producer():
            q = ctx.queue("q")
            h = yield malloc(64, "devbuf")
            yield put(q, object())               # any object goes through a queue
            yield free(h)
            yield work(100)
            if ctx.params["bug"] == "call":
                yield call(lambda k: int("many"))
            else:
                yield BUGS[ctx.params["bug"]][0](h, q)

        def consumer():
            yield get(ctx.queue("q"))

        return [(1, "consumer", consumer()), (0, "rx", producer())]


class CacheRealloc(Workload):
    NAME = "cache-realloc"
    DESCRIPTION = "reallocs an object of a cache"
    PARAMS = {}

    def threads(self, ctx):
        def thread():
            h = yield cache_alloc("vnode", 200)
            yield realloc(h, 400)
        return [(0, "fs", thread())]


class _Plugin:
    @hookimpl
    def kalloc_workloads(self):
        return [Buggy, CacheRealloc]


@pytest.fixture(scope="module", autouse=True)
def registered(register_plugin):
    register_plugin(_Plugin(), "buggy-workload")


@pytest.mark.parametrize("bug", BUGS)
def test_the_workload_thread_and_operation_are_named(bug):
    with pytest.raises(WorkloadError) as e:
        run_one(RunSpec("slab", "buggy", ncpus=2, params={"bug": bug}))
    assert str(e.value).startswith("workload 'buggy', thread 'rx' on cpu 0: ")
    assert BUGS[bug][1] in str(e.value)


@pytest.mark.parametrize("bug", ["free", "none"])
def test_one_line_and_exit_2_on_the_command_line(bug, capsys):
    assert main(["compare", "--backends", "slab,kmem_map", "--workloads", "buggy", "--ncpus", "2",
                 "--param", f"bug={bug}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kalloc: workload 'buggy', thread 'rx' on cpu 0: ")


def test_an_error_that_is_not_the_workloads_goes_on_as_it_is():
    with pytest.raises(ValueError, match="invalid literal for int") as e:
        run_one(RunSpec("slab", "buggy", ncpus=2, params={"bug": "call"}))
    assert not isinstance(e.value, WorkloadError)


@pytest.mark.parametrize("backend", ["slab", "kmem_map", "slub"])
def test_a_cache_object_is_not_realloced(backend):
    with pytest.raises(WorkloadError, match="thread 'fs' on cpu 0: realloc.0, 400, M_WAITOK.: handle 0 is an "
                                            "object of cache 'vnode': its size is the cache's"):
        run_one(RunSpec(backend, "cache-realloc"))
