"""Variants: one backend (or workload) several times in one grid, each with its own settings.

An item of ``--backends`` or ``--workloads`` is ``NAME`` or ``NAME[key=value,key=value]``:
the plugin NAME with those options (a backend) or parameters (a workload); values are
read as ``--set`` reads them.  A TOML file can also name them, in ``[[variant]]`` tables::

    [[variant]]
    name = "passive"                 # the label; default NAME[key=value,...]
    backend = "slab"                 # or: workload = "net"
    options = { remote_free = "passive" }   # or, for a workload: params = { packets = 20000 }

and a list refers to such a variant by its name (``backends = ["slab", "passive"]``).

The label is what tables, CSV, plots, sweeps and ratios show and group by; a record carries
it as ``"variant"`` (backend) and ``"workload_variant"`` (workload) beside ``"backend"`` and
``"workload"``, which stay the plugin names.  Without settings the label is the name itself,
so a grid without variants looks as it always did.  A variant's own settings win over
``--set``/``--param`` and the file's ``[options]``/``[params]`` (they are what tells it
apart), which win over the defaults.
"""

from __future__ import annotations

from attrs import field, frozen

KINDS = {"backend": "options", "workload": "params"}      # a variant table's plugin key -> its settings key
TABLE_KEYS = {"name", *KINDS, *KINDS.values()}


@frozen
class Variant:
    """``label`` as shown; ``name`` the plugin; ``settings`` its options or parameters as given."""

    label: str
    name: str
    settings: dict = field(factory=dict)


def show_value(value) -> str:
    """A setting's value as a label writes it (TOML's spelling of booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(show_value, value)) + "]"
    return str(value)


def label(name: str, settings: dict) -> str:
    """The default label: ``name``, or ``name[k=v,...]`` in the settings' order."""
    if not settings:
        return name
    return f"{name}[{','.join(f'{k}={show_value(v)}' for k, v in settings.items())}]"


def split_items(text: str) -> list:
    """``"a,b[x=1,y=2],c"`` -> ``["a", "b[x=1,y=2]", "c"]``: commas inside brackets stay."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def parse_item(text: str, what: str) -> Variant:
    """One list item, ``NAME`` or ``NAME[k=v,...]``; ValueError naming it if malformed."""
    from kalloc.config import parse_value      # (kalloc.config imports this module)
    name, bracket, rest = text.partition("[")
    name = name.strip()
    if not bracket:
        return Variant(name, name)
    if not rest.endswith("]") or not name:
        raise ValueError(f"{what} lists {text!r}: a variant is NAME[key=value,...]")
    body = rest[:-1].strip()
    if not body:
        raise ValueError(f"{what} lists {text!r}: nothing between the brackets")
    settings = {}
    for pair in split_items(body):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} lists {text!r}: {pair!r} is not key=value")
        if key in settings:
            raise ValueError(f"{what} lists {text!r}: {key!r} is set twice")
        settings[key] = parse_value(value.strip())
    return Variant(label(name, settings), name, settings)


def check_tables(tables) -> dict:
    """The file's ``[[variant]]`` tables, checked: {name: (kind, Variant)}, kind ``backend``
    or ``workload``."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"variant must be [[variant]] tables, got {tables!r}")
    out = {}
    for t in tables:
        unknown = set(t) - TABLE_KEYS
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in [[variant]] "
                             f"(known: {', '.join(sorted(TABLE_KEYS))})")
        kinds = [k for k in KINDS if k in t]
        if len(kinds) != 1 or not isinstance(t[kinds[0]], str):
            raise ValueError(f"[[variant]] {t!r} needs one of backend = \"NAME\" or workload = \"NAME\"")
        kind = kinds[0]
        settings = t.get(KINDS[kind], {})
        wrong = next((k for k in KINDS.values() if k in t and k != KINDS[kind]), None)
        if wrong or not isinstance(settings, dict):
            raise ValueError(f"[[variant]] of {kind} {t[kind]!r}: its settings are a table {KINDS[kind]} = {{...}}")
        name = t.get("name")
        if name is None:
            name = label(t[kind], settings)
        elif not isinstance(name, str) or not name or "[" in name or "," in name:
            raise ValueError(f"[[variant]] name must be a word without brackets or commas, got {name!r}")
        if name in out:
            raise ValueError(f"[[variant]] name {name!r} is given twice")
        out[name] = (kind, Variant(name, t[kind], dict(settings)))
    return out


def resolve(item, kind: str, tables: dict) -> Variant:
    """A list item of ``kind`` (backends or workloads): a [[variant]] by its name, else parsed."""
    if not isinstance(item, str):
        raise ValueError(f"{kind}s lists {item!r}: a {kind} is named by a string")
    if item in tables:
        found_kind, variant = tables[item]
        if found_kind != kind:
            raise ValueError(f"{kind}s lists {item!r}, a [[variant]] of a {found_kind}")
        return variant
    return parse_item(item, f"{kind}s")


def unused(tables: dict, chosen) -> list:
    """The [[variant]] names that no selected list names (a command ignores them)."""
    return [n for n in tables if n not in chosen]
