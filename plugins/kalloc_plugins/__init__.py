"""kalloc_plugins: the driver workloads (and extra backends) bundled with kalloc."""
