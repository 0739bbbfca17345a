"""Configuration: every key declared once (settings.py: type, default, meaning), loaded from YAML, overridden
by FLOWLENS_* environment variables, and checked at start so a bad key stops the service with a
message naming the key and the reason.

Environment overrides use the dotted key in upper case with ``__`` between section and name:
``FLOWLENS_STORAGE__SQLITE_PATH=/data/flows.db``. List values are comma-separated.
"""
from __future__ import annotations

import difflib
import os
from typing import Any, Mapping

import yaml

from .configtypes import ConfigError, parse_duration, parse_size  # noqa: F401  (callers import them from here)
from .notifyconf import check_references
from .settings import SECTIONS, SETTINGS, TOP_LEVEL_KEYS, Setting  # noqa: F401


class Config(Mapping[str, Any]):
    """Read-only mapping of dotted keys to parsed values, with ``cfg.section("storage")`` views."""

    def __init__(self, values: dict[str, Any], source: str = "<defaults>", deprecations: tuple[str, ...] = ()):
        self._values = values
        self.source = source
        self.deprecations = deprecations  # old names the file or environment used; services log each at start

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"no config key {key!r}") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def section(self, name: str) -> dict[str, Any]:
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in self._values.items() if k.startswith(prefix)}

    def as_nested(self) -> dict[str, dict[str, Any]]:
        return {s: self._values[s] if s in TOP_LEVEL_KEYS else self.section(s) for s in SECTIONS}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently, so a second ``netflow_port:`` further down would win unseen)."""

    def construct_document(self, node):
        self.root_node = node  # where a duplicate's dotted path is looked up from
        return super().construct_document(node)


class _DuplicateKey(yaml.YAMLError):
    pass


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the constructor below reports it
            continue
        if first is not None:
            where = ".".join((*_path_to(getattr(loader, "root_node", None), node), str(key))).replace(".[", "[")
            raise _DuplicateKey(f"key {where!r} appears twice: line {first} and line {line}")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


def _path_to(root, target, path: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The keys (and list indexes) from the document's root node down to ``target``; () if not found."""
    if root is target or root is None:
        return path
    if isinstance(root, yaml.MappingNode):
        children = [(str(k.value) if isinstance(k, yaml.ScalarNode) else "?", v) for k, v in root.value]
    elif isinstance(root, yaml.SequenceNode):
        children = [(f"[{i}]", v) for i, v in enumerate(root.value)]
    else:
        return ()
    for name, child in children:
        found = _path_to(child, target, (*path, name))
        if found or child is target:
            return found
    return ()


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_yaml(text_or_stream) -> Any:
    """A YAML document with duplicate keys refused (yaml.YAMLError naming the key and lines)."""
    return yaml.load(text_or_stream, Loader=_UniqueKeyLoader)


# Sections renamed, old name -> new name: files written for the old name keep working for a
# release, with a deprecation line in the log (load_config's ``deprecations``).
SECTION_ALIASES = {"store": "storage"}
# Names a user may reach for that are not sections, and the section they mean.
SECTION_HINTS = {"analyzer": "analysis", "analyser": "analysis", "analyse": "analysis", "collectors": "collector",
                 "ui": "web", "http": "web", "logging": "log", "queries": "query", "zmq": "bus", "db": "storage",
                 "sqlite": "storage", "database": "storage"}


def _section_hint(name: str) -> str:
    guess = SECTION_HINTS.get(str(name).lower())
    if guess is None:
        close = difflib.get_close_matches(str(name).lower(), list(SECTIONS) + list(SECTION_ALIASES), n=1, cutoff=0.6)
        guess = SECTION_ALIASES.get(close[0], close[0]) if close else None
    return f"; did you mean {guess!r}?" if guess else ""


def _flatten(doc: Any, where: str, deprecations: list[str] | None = None) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections")
    for old, new in SECTION_ALIASES.items():
        if old in doc and new in doc:
            raise ConfigError(f"{where}: sections {new!r} and {old!r} are both given; {old!r} is the old name of "
                              f"{new!r}: move its keys under {new!r}")
    flat: dict[str, Any] = {}
    for section, body in doc.items():
        if section in SECTION_ALIASES:
            if deprecations is not None:
                deprecations.append(f"{where}: section {section!r} is deprecated, rename it to "
                                    f"{SECTION_ALIASES[section]!r}")
            section = SECTION_ALIASES[section]
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section {section!r}{_section_hint(section)} "
                              f"(known: {', '.join(SECTIONS)})")
        if section in TOP_LEVEL_KEYS:
            flat[section] = body
            continue
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping of keys")
        for key, value in body.items():
            flat[f"{section}.{key}"] = value
    return flat


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file, then FLOWLENS_* variables, then ``overrides`` (dotted keys)."""
    env = os.environ if env is None else env
    raw: dict[str, tuple[Any, str]] = {}
    deprecations: list[str] = []
    where = "<defaults>"
    if path:
        where = str(path)
        try:
            with open(path, encoding="utf-8") as f:
                doc = parse_yaml(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except UnicodeDecodeError as e:  # a capture or a binary given where the YAML file goes
            raise ConfigError(f"{path}: not a config file: byte {e.start} is not UTF-8 text") from e
        except _DuplicateKey as e:
            raise ConfigError(f"{path}: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        for key, value in _flatten(doc, where, deprecations).items():
            raw[key] = (value, f"{where}: key {key!r}")
    for name, value in env.items():
        if not name.startswith("FLOWLENS_") or name in ("FLOWLENS_CONFIG",):
            continue
        body = name[len("FLOWLENS_"):]
        if "__" not in body:
            raise ConfigError(f"environment {name}: use FLOWLENS_<SECTION>__<KEY>, e.g. FLOWLENS_STORAGE__SQLITE_PATH")
        section, key = body.split("__", 1)
        raw[f"{section.lower()}.{key.lower()}"] = (value, f"environment {name} (key '{section.lower()}.{key.lower()}')")
    for key, value in (overrides or {}).items():
        raw[key] = (value, f"override of key {key!r}")

    values = {k: s.default for k, s in SETTINGS.items()}
    for key, (value, origin) in raw.items():
        setting = SETTINGS.get(key)
        if setting is None:
            close = [k for k in SETTINGS if k.split(".")[-1] == key.split(".")[-1]]
            close = close or difflib.get_close_matches(key, SETTINGS, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{origin}: unknown key{hint}")
        try:
            values[key] = setting.parse(value)
        except ValueError as e:
            raise ConfigError(f"{origin}: {e}") from None
    try:
        check_references(values)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    return Config(values, where, tuple(deprecations))


def config_from_env_or_path(path: str | None) -> Config:
    """The config a service starts with: --config PATH, else $FLOWLENS_CONFIG, else defaults."""
    return load_config(path or os.environ.get("FLOWLENS_CONFIG") or None)
