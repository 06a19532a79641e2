"""Where the runs of a grid execute: this process, local processes, or a Dask cluster.

Every executor takes a list of RunSpecs and returns their records **in spec order**, so
the output does not depend on the executor or on the number of workers: a run is a pure
function of its RunSpec (the seed is in it), which is what makes `--jobs 8` and a Dask
cluster give byte-identical results to `--jobs 1`.

* ``local``: ``--jobs 1`` runs in this process; ``--jobs N`` uses a ProcessPoolExecutor.
* ``dask``: Dask distributed (the optional extra ``kalloc[dask]``); ``--scheduler
  tcp://host:8786`` connects to an existing cluster, without it a LocalCluster of
  ``--jobs`` single-threaded workers is started for the run and stopped after it.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from kalloc.harness import run_one


def run_local(specs: list, jobs: int = 1, progress=None) -> list:
    if jobs <= 1:
        out = []
        for s in specs:
            out.append(run_one(s))
            if progress:
                progress()
        return out
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, s) for s in specs]
        return [_tick(f.result(), progress) for f in futures]


def _tick(result, progress):
    if progress:
        progress()
    return result


def run_dask(specs: list, jobs: int = 1, progress=None, scheduler: str | None = None) -> list:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("the dask executor needs Dask distributed: pip install 'kalloc[dask]'") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        scheduler = cluster
    try:
        with Client(scheduler) as client:
            futures = client.map(run_one, specs, pure=False)
            return [_tick(f.result(), progress) for f in futures]
    except OSError as e:
        raise ValueError(f"cannot reach the Dask scheduler {scheduler!r}: {e}") from None
    finally:
        if cluster is not None:
            cluster.close()


def run_grid(specs: list, jobs: int = 1, progress=None, executor: str = "local",
             scheduler: str | None = None) -> list:
    if executor == "dask":
        return run_dask(specs, jobs, progress, scheduler)
    return run_local(specs, jobs, progress)
