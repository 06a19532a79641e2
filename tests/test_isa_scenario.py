"""The 2003 regression: slab + 2003-08 page order starves a late ISA driver; the others do not."""

import pytest

import kalloc
from kalloc import plugins
from kalloc.costs import CostModel
from kalloc.dma import dma_stats
from kalloc.dma.scenario import (KERNEL_IMAGE, boot_wired, format_table, isa_dma_scenario, kernel_tables,
                                 take_ranges, wire_after_boot, wired_layout)
from kalloc.harness import RunSpec, Simulator, run_one
from kalloc.workload import Context, resolve_params
from kalloc_plugins.workloads.isa import Isa

needs_backends = pytest.mark.skipif(not {"slab", "kmem_map"} <= set(plugins.backends()),
                                    reason="the slab and kmem_map backends are not installed")


@needs_backends
def test_scenario_fails_only_on_slab_with_the_2003_08_order():
    rows = isa_dma_scenario()
    by = {(r["backend"], r["page_policy"]): r for r in rows}
    bad, fixed, old = by["slab", "2003-08"], by["slab", "2003-09-14"], by["kmem_map", "4.8"]
    assert not bad["bounce_ok"] and bad["messages"][-1] == "isa_dmainit(5, 65536) failed"
    assert fixed["bounce_ok"] and old["bounce_ok"]
    assert fixed["dma_round_trip_ok"] and old["dma_round_trip_ok"]
    # The mechanism, not luck: the failing kernel's zones fill memory below 16 MiB, the
    # fixed slab's are all above it, and 4.8 keeps nearly all of it free.
    assert bad["largest_free_run_below_16m_bytes"] < 65536 <= fixed["largest_free_run_below_16m_bytes"]
    assert bad["slab_zones_below_16m"] > 50 and fixed["slab_zones_below_16m"] == 0
    assert bad["free_below_16m_bytes"] < 1 << 20
    assert old["free_below_16m_bytes"] > 10 << 20 and fixed["free_below_16m_bytes"] > 10 << 20
    table = format_table(rows)
    assert "FAILED" in table and table.count("| ok ") == 2


def run_isa(backend="bump", ncpus=2, **params):
    k = kalloc.boot(backend, ncpus=ncpus, physmem="256M")
    sim = Simulator(k, CostModel.from_config({}))
    ctx = Context("isa", resolve_params(Isa, params), ncpus, 0)
    for cpu, name, gen in Isa().threads(ctx):
        sim.add_thread(cpu, name, gen)
    sim.run()
    return k, sim, ctx


def test_isa_workload_moves_data_through_the_bounce_buffer():
    k, sim, ctx = run_isa(transfers=4)
    assert ctx.counts == {"attached": 1, "transfers": 8, "bytes": 8 * 16384}
    isa = dma_stats(k)["isa"]
    assert isa["bounce_buffers"]["5"]["size"] == 65536 and isa["bounced_starts"] == 8
    assert isa["device_bytes"] == 8 * 16384 and sim.ops["failed"] == 0


@needs_backends
@pytest.mark.parametrize("options,counts", [({"page_policy": "2003-08"}, {"bounce_failed": 1}),
                                            ({}, {"attached": 1, "transfers": 2, "bytes": 32768})])
def test_isa_workload_on_slab_shows_the_regression(options, counts):
    k = kalloc.boot("slab", ncpus=2, physmem="256M", **options)
    sim = Simulator(k, CostModel.from_config({}))
    ctx = Context("isa", resolve_params(Isa, {"transfers": 1}), 2, 0)
    for cpu, name, gen in Isa().threads(ctx):
        sim.add_thread(cpu, name, gen)
    sim.run()
    assert ctx.counts == counts


def test_wire_after_boot_makes_up_for_pages_the_backend_took():
    k = kalloc.boot("bump", ncpus=1, physmem="64M")
    k.machine.page_take(0xa0)                               # as if a boot allocation sat in the hole
    end = (0x100000 + KERNEL_IMAGE) >> 12
    assert wire_after_boot(k) == 1
    assert k.machine.page_state[end] == 1 and k.machine.page_state[end + 1] == 0


def test_isa_workload_counts_a_failed_attach():
    k = kalloc.boot("bump", ncpus=1, physmem="64M")
    take_ranges(k.machine, [(0, 0x1000000)])            # nothing free below 16 MiB
    sim = Simulator(k, CostModel.from_config({}))
    ctx = Context("isa", resolve_params(Isa, {"scale": 0.1, "wire_layout": False}), 1, 0)
    for cpu, name, gen in Isa().threads(ctx):
        sim.add_thread(cpu, name, gen)
    sim.run()
    assert ctx.counts == {"bounce_failed": 1}
    assert dma_stats(k)["isa"]["messages"][-1] == "isa_dmainit(5, 65536) failed"


@pytest.mark.parametrize("params,match", [
    ({"channel": 4}, "channel must be 0, 1, 3 or 5-7"),
    ({"channel": 2}, "2 is the floppy controller's"),          # the scenario's rule, shared
    ({"block": 65536, "bounce": 4096}, "block must be 1 byte to bounce"),
    ({"block": 0}, "block must be 1 byte to bounce"),
    ({"channel": 1, "bounce": 131072}, "bounce must be 1 byte to 64 KiB"),
    ({"channel": 5, "bounce": 65535}, "an even count"),
    ({"channel": 5, "block": 1001}, "an even count"),
    ({"kernel_image": 4097}, "kernel_image must be a page multiple"),
    ({"kernel_image": 99999999}, "ends below 16 MiB"),
    ({"scale": 0}, "scale must be positive"),
])
def test_isa_workload_rejects_bad_params(params, match):
    with pytest.raises(ValueError, match=f"^workload 'isa': .*{match}"):
        resolve_params(Isa, params)


@pytest.mark.parametrize("backend", ["bump", "kmem_map", "slab"])
@pytest.mark.parametrize("physmem,params", [("4M", {}), ("5M", {}), ("8M", {"kernel_image": 7 << 20})])
def test_isa_workload_on_a_machine_smaller_than_its_layout(backend, physmem, params):
    if backend not in plugins.backends():
        pytest.skip(f"{backend} is not installed")
    with pytest.raises(ValueError, match="workload 'isa' needs physmem above"):
        run_one(RunSpec(backend, "isa", 1, physmem=physmem, params=params))


def test_wire_after_boot_needs_memory_past_the_image():
    k = kalloc.boot("bump", ncpus=1, physmem="8M")
    before = bytes(k.machine.page_state)
    with pytest.raises(ValueError, match=r"needs physmem above 8192K: .* kernel_image \(7168K\)"):
        wire_after_boot(k, 7 << 20)                         # the image would end where memory does
    assert bytes(k.machine.page_state) == before            # nothing taken: the check comes first


def test_layout_is_wired_before_the_backend_boots():
    k = boot_wired("bump", "4.8", "64M", 2)
    state = k.machine.page_state
    for lo, hi in wired_layout(2, KERNEL_IMAGE):
        assert all(state[lo >> 12:hi >> 12])
    assert not state[1] and not state[(0x100000 + KERNEL_IMAGE) >> 12]   # base memory, above the image: free
    assert take_ranges(k.machine, [(0, 0x2000)]) == 1       # page 0 was taken already


def test_kernel_tables_follow_ram():
    k = kalloc.boot("bump", physmem="256M")
    assert kernel_tables(k) == 131072 + 65536 + 65536 + 8192 + 256 + 2048 + 2048 + 512


@pytest.mark.parametrize("kwargs,match", [
    ({"channel": 4}, "channel must be 0, 1, 3 or 5-7"),
    ({"channel": 2}, "2 is the floppy controller's"),
    ({"channel": 5, "bounce": 4097}, "an even count"),
    ({"channel": 1, "bounce": "128K"}, "bounce must be 1 byte to 64 KiB"),
    ({"physmem": "16M"}, "physmem must be a page multiple from 32M"),
    ({"kernel_image": "16M"}, "kernel_image must be a page multiple that ends below 16 MiB"),
    ({"ncpus": 0}, "ncpus must be an int from 1 to 64"),
    ({"scale": 0}, "scale must be positive"),
    ({"scale": float("inf")}, "scale must be positive and finite, got inf"),
    ({"scale": float("nan")}, "scale must be positive and finite, got nan"),
])
def test_scenario_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        isa_dma_scenario(configs=(("bump", "4.8"),), **kwargs)


@needs_backends
def test_cli_scenario(capsys):
    from kalloc import cli
    if "scenario" not in cli.COMMANDS:
        pytest.skip("`kalloc scenario` is not wired into the CLI yet")
    assert cli.main(["scenario", "isa-dma"]) == 0
    out = capsys.readouterr().out
    assert "FAILED" in out and out.count("| ok ") == 2
    assert cli.main(["scenario", "isa-dma", "--channel", "4"]) == 2
