"""Read a configuration file into a ``PlannerConfig``, or say precisely what is wrong with it.

Every problem is reported as ``FILE:LINE:COL: message`` (1-based), all of them at once: YAML
syntax, duplicate keys (YAML keeps the last one silently; we refuse), unknown keys (with a
did-you-mean), wrong types and units, unknown kinds, models, policies, sinks and providers, and
API keys written into the file. The YAML is composed into nodes first so that every key and
value keeps its start mark; each pydantic error location is then walked back to its node.

Secrets are resolved later, on demand, with ``resolve_api_key`` / ``resolve_store_url``: loading
a config never reads a key and no message ever echoes one.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import yaml
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from planner.config.schema import (
    IntakeConfig,
    PlannerConfig,
    ProviderBase,
    SqlSourceConfig,
    is_union,
    unwrap_annotation,
)
from planner.config.units import describe, show
from planner.errors import ConfigError

if TYPE_CHECKING:
    from planner.core.catalog import Catalog

Path_ = tuple[Any, ...]
Point = Literal["key", "value"]

DEFAULT_CONFIG_PATHS = (Path("planner.yaml"), Path("/etc/planner/planner.yaml"))
INLINE_KEY_MESSAGE = "API keys must not be written in the config; use api_key_env or api_key_file"
_SECRET_KEYS = frozenset({"apikey", "api_key", "key", "secret", "token", "password", "api_token"})
_MAX_DEPTH = 64
_ARTICLE = {"chat": "a", "embedding": "an"}
_ARTICLE_FAMILY = {"openai": "an OpenAI", "gemini": "a Gemini"}
_DEFAULT_SLOTS = {  # default_models.<slot>: (provider family, model kind)
    "openai_chat": ("openai", "chat"),
    "openai_embeddings": ("openai", "embedding"),
    "gemini_generate": ("gemini", "chat"),
    "gemini_embed": ("gemini", "embedding"),
}
_KIND_NOUN = {"providers": "provider", "sources": "source", "sinks": "sink"}


# ---------------------------------------------------------------- YAML with positions


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A 1-based line and column in the config file."""

    line: int
    column: int


@dataclass(slots=True)
class Document:
    """Plain data from YAML plus the start position of every key and value, by data path."""

    data: Any
    keys: dict[Path_, Position] = field(default_factory=dict)
    values: dict[Path_, Position] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    position: Position
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.position.line}:{self.position.column}: {self.message}"


def _pos(mark: yaml.Mark | None) -> Position:
    return Position(1, 1) if mark is None else Position(mark.line + 1, mark.column + 1)


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions and duplicate keys."""

    def __init__(self, loader: yaml.SafeLoader, doc: Document, problems: list[Problem]) -> None:
        self.loader = loader
        self.doc = doc
        self.problems = problems

    def build(self, node: yaml.Node, path: Path_) -> Any:
        if len(path) > _MAX_DEPTH:
            self.problems.append(Problem(_pos(node.start_mark), "nesting too deep"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.doc.values[(*path, index)] = _pos(item.start_mark)
                items.append(self.build(item, (*path, index)))
            return items
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            where = _pos(key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(
                    Problem(where, "merge keys (<<) are not supported; write the keys out")
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(where, "a key must be a plain scalar"))
                continue
            key = self.loader.construct_object(key_node, deep=True)
            key_path = (*path, key)
            if key in out:
                first = self.doc.keys[key_path]
                self.problems.append(
                    Problem(where, f"duplicate key {show(key)} (first given at line {first.line})")
                )
                continue
            self.doc.keys[key_path] = where
            self.doc.values[key_path] = _pos(value_node.start_mark)
            out[key] = self.build(value_node, key_path)
        return out


def read_yaml(text: str) -> tuple[Document, list[Problem]]:
    """Parse one YAML document, keeping positions; syntax errors become problems."""
    doc = Document(data=None)
    problems: list[Problem] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.values[()] = _pos(node.start_mark)
            doc.data = _Builder(loader, doc, problems).build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            detail = f"{exc.problem} ({exc.context})"
        problems.append(Problem(_pos(mark), f"YAML syntax error: {detail}"))
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problems.append(Problem(Position(line, column), f"YAML syntax error: {exc.reason}"))
    except yaml.YAMLError as exc:
        problems.append(Problem(Position(1, 1), f"YAML error: {exc}"))
    finally:
        loader.dispose()
    return doc, problems


# ---------------------------------------------------------------- locating errors


def _walk(doc: Document, loc: Path_) -> tuple[Path_, bool]:
    """The deepest data path ``loc`` reaches, skipping union tags; ``True`` if it reached all."""
    current = doc.data
    path: Path_ = ()
    for part in loc:
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_list or (isinstance(current, dict) and part in current):
            path, current = (*path, part), current[part]
        elif isinstance(current, dict) and current.get("kind") == part:
            continue  # pydantic puts the discriminator's tag in the location
        elif isinstance(current, dict) and (key := _key_named(current, part)) is not None:
            path, current = (*path, key), current[key]  # a YAML date or number as a key
        else:
            return path, False
    return path, True


def _key_named(mapping: dict[Any, Any], part: Any) -> Any:
    return next((k for k in mapping if str(k) == str(part) or repr(k) == part), None)


def position_of(doc: Document, path: Path_, point: Point) -> Position:
    """The key's or the value's position for a data path (the value's if it has no key)."""
    if point == "key" and path in doc.keys:
        return doc.keys[path]
    return doc.values.get(path) or doc.keys.get(path) or Position(1, 1)


def _locate(doc: Document, loc: Path_, point: Point) -> Position:
    if loc and loc[-1] == "[key]":
        path, _ = _walk(doc, loc[:-1])
        return position_of(doc, path, "key")
    path, complete = _walk(doc, loc)
    return position_of(doc, path, point if complete else "key")


# ---------------------------------------------------------------- messages


def _fields_at(loc: Path_) -> list[str] | None:
    """The keys allowed in the mapping at ``loc`` (for did-you-mean), if it is a section."""
    annotation: Any = PlannerConfig
    for part in loc:
        annotation = _narrow(annotation, part)
        if annotation is None:
            return None
    model = _model(annotation, None)
    return None if model is None else list(model.model_fields)


def _model(annotation: Any, tag: Any) -> Any:
    annotation, _ = unwrap_annotation(annotation)
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    if is_union(annotation):
        members = [_model(a, tag) for a in get_args(annotation) if a is not type(None)]
        models = [m for m in members if m is not None]
        if len(models) == 1:
            return models[0]
        for member in models:
            kind = member.model_fields.get("kind")
            if kind is not None and tag in get_args(kind.annotation):
                return member
    return None


def _narrow(annotation: Any, part: Any) -> Any:
    bare, _ = unwrap_annotation(annotation)
    if get_origin(bare) is dict:
        return get_args(bare)[1]
    if is_union(bare) and _model(bare, None) is None:
        return _model(bare, part)
    model = _model(bare, None)
    if model is not None and part in model.model_fields:
        return model.model_fields[part].rebuild_annotation()
    kind = None if model is None else model.model_fields.get("kind")
    if kind is not None and part in get_args(kind.annotation):
        return model  # the discriminator's tag in a location
    return None


def _kinds_of(section: str) -> list[str]:
    annotation = PlannerConfig.model_fields[section].rebuild_annotation()
    union = get_args(unwrap_annotation(annotation)[0])[1]
    members = get_args(unwrap_annotation(union)[0]) or (unwrap_annotation(union)[0],)
    return [get_args(m.model_fields["kind"].annotation)[0] for m in members]


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(loc: Path_) -> str:
    name = loc[-1]
    if str(name).lower().replace("-", "_") in _SECRET_KEYS and loc and loc[0] == "providers":
        return INLINE_KEY_MESSAGE
    allowed = _fields_at(loc[:-1]) or []
    hint = did_you_mean(str(name), allowed)
    if not hint and allowed:
        hint = f" (expected one of: {', '.join(allowed)})"
    return f"unknown key {show(name)}{hint}"


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}


def _message(error: ErrorDetails) -> str:
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    if kind == "invalid_key":
        return f"expected a string key; got {describe(loc[-1])}"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        noun = _KIND_NOUN.get(str(loc[0]), "section")
        expected = ", ".join(_kinds_of(str(loc[0]))) if loc[0] in _KIND_NOUN else "?"
        if kind == "union_tag_not_found":
            return f"missing key 'kind' (expected one of: {expected})"
        return f"unknown {noun} kind {show(ctx.get('tag'))} (expected one of: {expected})"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}; got {describe(error['input'])}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}; got {describe(error['input'])}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = "at least" if kind == "greater_than_equal" else "at most"
        limit = ctx.get("ge", ctx.get("le"))
        return f"expected {bound} {limit}; got {describe(error['input'])}"
    text = error["msg"].removeprefix("Value error, ")
    return text.replace("Input should be", "expected", 1)


def _error_loc(error: ErrorDetails) -> Path_:
    loc = tuple(error["loc"])
    return (*loc, "kind") if error["type"] == "union_tag_invalid" else loc


def _point(error: ErrorDetails) -> Point:
    return (
        "key"
        if error["type"] in ("extra_forbidden", "missing", "union_tag_not_found", "invalid_key")
        else "value"
    )


# ---------------------------------------------------------------- cross-references


@dataclass(slots=True)
class _Checker:
    """Checks that need more than one section (or the catalog), on the raw data."""

    doc: Document
    catalog: Catalog | None
    known: Callable[[str], bool]
    known_list: list[str]
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: Path_, point: Point, message: str) -> None:
        self.problems.append(Problem(position_of(self.doc, path, point), message))

    def section(self, name: str) -> dict[Any, Any]:
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    def entries(self, name: str) -> Iterator[tuple[Any, dict[Any, Any]]]:
        for key, value in self.section(name).items():
            if isinstance(value, dict):
                yield key, value

    def reference(self, path: Path_, value: Any, names: list[str], what: str) -> None:
        if isinstance(value, str) and value not in names:
            defined = ", ".join(names) if names else "none"
            self.add(
                path,
                "value",
                f"unknown {what} {show(value)}{did_you_mean(value, names)} (defined: {defined})",
            )

    def model(self, path: Path_, value: Any, want: str | None = None) -> None:
        if not isinstance(value, str):
            return
        if not self.known(value):
            hint = did_you_mean(value, self.known_list)
            self.add(
                path,
                "value" if path[-2:-1] != ("per_model",) else "key",
                f"unknown model {show(value)}{hint}; add it under models: to use it",
            )
            return
        entry = None if self.catalog is None else self.catalog.get(value)
        if want is not None and entry is not None and entry.kind.value != want:
            self.add(
                path,
                "value",
                f"{show(value)} is {_ARTICLE[entry.kind.value]} {entry.kind.value} model; "
                f"expected {_ARTICLE[want]} {want} model",
            )

    def family(self, path: Path_, value: Any, want: str) -> None:
        entry = (
            None if self.catalog is None or not isinstance(value, str) else self.catalog.get(value)
        )
        if entry is not None and entry.provider.value != want:
            self.add(path, "value", f"{show(value)} is not {_ARTICLE_FAMILY[want]} model")

    def run(self) -> list[Problem]:
        policies = self.section("policies")
        policy_names = [str(k) for k in policies] if "policies" in self._top() else ["default"]
        sink_names = [str(k) for k in self.section("sinks")]
        for name, source in self.entries("sources"):
            here: Path_ = ("sources", name)
            if "policy" in source:
                self.reference((*here, "policy"), source["policy"], policy_names, "policy")
            elif "default" not in policy_names:
                self.add(here, "key", "no policy: given and no policy named 'default' defined")
            self.reference((*here, "sink"), source.get("sink"), sink_names, "sink")
            self.model((*here, "default_model"), source.get("default_model"), "chat")
            self.model(
                (*here, "default_embedding_model"),
                source.get("default_embedding_model"),
                "embedding",
            )
            defaults = source.get("default_models")
            for slot, value in (defaults if isinstance(defaults, dict) else {}).items():
                if slot in _DEFAULT_SLOTS:
                    self.model((*here, "default_models", slot), value, _DEFAULT_SLOTS[slot][1])
                    self.family((*here, "default_models", slot), value, _DEFAULT_SLOTS[slot][0])
        intake = self.section("intake")
        self.reference(("intake", "policy"), intake.get("policy"), policy_names, "policy")
        if (
            intake.get("enabled") is True
            and "policy" not in intake
            and "default" not in policy_names
        ):
            self.add(("intake",), "key", "no policy: given and no policy named 'default' defined")
        self.model(("intake", "default_model"), intake.get("default_model"), "chat")
        self.reference(("intake", "sink"), intake.get("sink"), sink_names, "sink")
        self._limits()
        self._providers()
        self._store()
        return self.problems

    def _top(self) -> dict[Any, Any]:
        return self.doc.data if isinstance(self.doc.data, dict) else {}

    def _limits(self) -> None:
        providers = [str(k) for k in self.section("providers")]
        for name, limits in self.entries("limits"):
            if name not in providers:
                hint = did_you_mean(str(name), providers)
                self.add(("limits", name), "key", f"limits for unknown provider {show(name)}{hint}")
            per_model = limits.get("per_model")
            for model in per_model if isinstance(per_model, dict) else {}:
                self.model(("limits", name, "per_model", model), model)

    def _providers(self) -> None:
        for name, provider in self.entries("providers"):
            if provider.get("api_key_env") is not None and provider.get("api_key_file") is not None:
                self.add(
                    ("providers", name, "api_key_file"),
                    "key",
                    "give either api_key_env or api_key_file, not both",
                )

    def _store(self) -> None:
        store = self.section("store")
        if store.get("url") is not None and store.get("url_env") is not None:
            self.add(
                ("store", "url_env"), "key", "give either store.url or store.url_env, not both"
            )


def _check_models(doc: Document, base: Catalog) -> tuple[Catalog | None, list[Problem]]:
    """Validate each ``models:`` entry against the catalog rules; the merged catalog if all pass."""
    raw = doc.data.get("models") if isinstance(doc.data, dict) else None
    if not isinstance(raw, dict):
        return base, []
    problems: list[Problem] = []
    if not all(isinstance(entry, dict) for entry in raw.values()):
        return None, []  # pydantic reports the type
    for model, entry in raw.items():
        try:
            base.merged({str(model): entry})
        except ValueError as exc:
            path, message = _catalog_error(str(exc), str(model))
            where = _walk(doc, ("models", model, *path))
            point: Point = "value" if where[1] else "key"
            problems.append(Problem(position_of(doc, where[0], point), message))
    if problems:
        return None, problems
    return base.merged({str(m): e for m, e in raw.items()}), []


def _catalog_error(text: str, model: str) -> tuple[Path_, str]:
    prefix = f"models.{model}"
    if not text.startswith(prefix):
        return (), text
    rest, _, message = text[len(prefix) :].partition(": ")
    path: Path_ = tuple(
        int(index) if index else name for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", rest)
    )
    if message == "required" and path:
        message = f"missing required key {path[-1]!r}"
    return path, message


# ---------------------------------------------------------------- checks on the validated config


def _check_config(cfg: PlannerConfig, doc: Document) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: Path_, point: Point, message: str) -> None:
        problems.append(Problem(position_of(doc, path, point), message))

    seen: dict[Path, str] = {}
    for name, source in cfg.sources.items():
        for field_name in ("default_model", "default_embedding_model"):
            model = getattr(source, field_name)
            if model is not None and cfg.providers and cfg.provider_for(model) is None:
                add(("sources", name, field_name), "value", _unserved(cfg, model))
        for slot, model in source.default_models.model_dump().items():
            if model is not None and cfg.providers and cfg.provider_for(model) is None:
                add(("sources", name, "default_models", slot), "value", _unserved(cfg, model))
        if isinstance(source, SqlSourceConfig):
            problems += _check_sql_source(name, source, add)
            continue
        if source.path in seen:
            add(
                ("sources", name, "path"),
                "value",
                f"same folder as source {show(seen[source.path])}",
            )
        seen[source.path] = name
    for name, sink in cfg.sinks.items():
        secrets = [getattr(sink, k, None) for k in ("secret_env", "secret_file")]
        if sink.kind == "webhook" and secrets.count(None) != 1:
            add(("sinks", name), "key", "a webhook sink needs one of secret_env, secret_file")
    _check_intake(cfg, add)
    return problems


def _check_intake(cfg: PlannerConfig, add: Callable[[Path_, Point, str], None]) -> None:
    intake = cfg.intake
    if intake.enabled and cfg.metrics.enabled and intake.listen == cfg.metrics.listen:
        add(("intake", "listen"), "value", "intake and metrics must not share a listener")
    if intake.enabled and intake.tokens_env is None and intake.tokens_file is None:
        add(
            ("intake", "enabled"),
            "value",
            "the intake needs bearer tokens: set tokens_env or tokens_file",
        )
    if intake.tokens_env is not None and intake.tokens_file is not None:
        add(
            ("intake", "tokens_file"),
            "key",
            "give either intake.tokens_env or intake.tokens_file, not both",
        )
    if intake.enabled and intake.source in cfg.sources:
        add(
            ("intake", "source"),
            "value",
            f"source {show(intake.source)} is configured under sources:; "
            "the intake needs a name of its own",
        )


def _check_sql_source(
    name: str, source: SqlSourceConfig, add: Callable[[Path_, Point, str], None]
) -> list[Problem]:
    if (source.table is None) == (source.query is None):
        add(("sources", name), "key", "an sql source needs one of table, query")
    if not any(getattr(source.columns, f) for f in ("prompt", "messages", "text", "body")):
        add(
            ("sources", name, "columns"),
            "key",
            "the column mapping needs one of prompt, messages, text, body",
        )
    return []


def _unserved(cfg: PlannerConfig, model: str) -> str:
    patterns = "; ".join(f"{name}: {', '.join(p.models)}" for name, p in cfg.providers.items())
    return f"no configured provider serves model {show(model)} (providers.*.models: {patterns})"


# ---------------------------------------------------------------- entry points


Check = Callable[[PlannerConfig], Iterable[tuple[Path_, str]]]
"""A check the program that will run the configuration adds (``runtime.wiring.RUNTIME_CHECKS``):
given the validated config, each problem as (path of the offending key, message). ``validate``
and ``run`` load with the same checks, so validate refuses exactly what run refuses."""


def analyse(
    text: str,
    *,
    base_dir: Path | None,
    catalog: Catalog | None = None,
    checks: Sequence[Check] = (),
) -> tuple[PlannerConfig | None, list[Problem]]:
    """The config and every problem found in ``text`` (sorted by position)."""
    doc, problems = read_yaml(text)
    if problems and doc.data is None:
        return None, problems
    if doc.data is None:
        return None, [Problem(Position(1, 1), "the configuration is empty")]
    if not isinstance(doc.data, dict):
        return None, [
            Problem(Position(1, 1), f"expected a mapping of sections; got {describe(doc.data)}")
        ]
    if catalog is None:
        from planner.config.prices import shipped_catalog

        catalog = shipped_catalog()
    merged, model_problems = _check_models(doc, catalog)
    problems += model_problems
    config_models = doc.data.get("models") if isinstance(doc.data.get("models"), dict) else {}
    lookup = merged or catalog
    known_list = sorted({*catalog.models(), *map(str, config_models or {})})

    def known(model: str) -> bool:
        return lookup.get(model) is not None or model in (config_models or {})

    problems += _Checker(doc, lookup, known, known_list).run()
    cfg: PlannerConfig | None = None
    try:
        cfg = PlannerConfig.model_validate(doc.data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems += [
            Problem(_locate(doc, _error_loc(e), _point(e)), _message(e)) for e in exc.errors()
        ]
    if cfg is not None:
        problems += _check_config(cfg, doc)
    if cfg is not None and not problems:
        problems += [
            Problem(_locate(doc, path, "value"), message)
            for check in checks
            for path, message in check(cfg)
        ]
    unique = sorted(set(problems))
    return (cfg if not unique else None), unique


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None


def parse_config(
    text: str,
    *,
    filename: str = "<config>",
    base_dir: Path | None = None,
    catalog: Catalog | None = None,
    checks: Sequence[Check] = (),
) -> PlannerConfig:
    """Validate config text; relative paths resolve against ``base_dir``. Raises ``ConfigError``."""
    cfg, problems = analyse(text, base_dir=base_dir, catalog=catalog, checks=checks)
    if cfg is None:
        raise ConfigError([p.render(filename) for p in problems])
    return cfg


def load_config(
    path: str | os.PathLike[str], *, catalog: Catalog | None = None, checks: Sequence[Check] = ()
) -> PlannerConfig:
    """Read and validate a config file; paths in it are relative to its folder.

    ``catalog`` is the base price catalog (default: the shipped one) that ``models:`` extends;
    ``checks`` are the running program's own (see ``Check``).
    """
    file = Path(path)
    text = _read(file)
    return parse_config(
        text, filename=str(path), base_dir=file.resolve().parent, catalog=catalog, checks=checks
    )


def validate_file(
    path: str | os.PathLike[str], *, catalog: Catalog | None = None, checks: Sequence[Check] = ()
) -> list[str]:
    """Every problem of a config file as ``FILE:LINE:COL: message``; empty when it is valid."""
    try:
        load_config(path, catalog=catalog, checks=checks)
    except ConfigError as exc:
        return exc.problems
    return []


def default_config_path() -> Path:
    """The first of ``./planner.yaml`` and ``/etc/planner/planner.yaml`` that exists (else the
    latter). The CLI's ``-c`` and ``PLANNER_CONFIG`` come first; this only checks files."""
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return DEFAULT_CONFIG_PATHS[-1]


# ---------------------------------------------------------------- secrets, on demand


def _expand(text: str, environ: Mapping[str, str]) -> str:
    match = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}(.*)", text)
    if match is None:
        return text
    name, rest = match.groups()
    if not environ.get(name):
        raise ConfigError([f"api_key_file: ${{{name}}} is not set in the environment"])
    return environ[name] + rest


def resolve_api_key(provider: ProviderBase, environ: Mapping[str, str]) -> SecretStr | None:
    """The provider's API key from its file or environment variable; ``None`` when not set.

    A configured file that cannot be read (or is empty) is a ``ConfigError``; the message names
    the file, never its content.
    """
    if provider.api_key_file is not None:
        path = Path(_expand(provider.api_key_file, environ))
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError([f"api_key_file {path}: cannot read: {reason}"]) from None
        if not text:
            raise ConfigError([f"api_key_file {path}: the file is empty"])
        return SecretStr(text)
    name = provider.key_env_name()
    value = environ.get(name, "").strip() if name else ""
    return SecretStr(value) if value else None


def resolve_secret(
    env_name: str | None, file: str | None, environ: Mapping[str, str], what: str
) -> SecretStr | None:
    """A secret from its file (``${NAME}`` expanded) or environment variable; ``None`` when
    neither is set. ``what`` names the setting in errors, which never show the content."""
    if file is not None:
        path = Path(_expand(file, environ))
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError([f"{what} {path}: cannot read: {reason}"]) from None
        if not text:
            raise ConfigError([f"{what} {path}: the file is empty"])
        return SecretStr(text)
    value = environ.get(env_name, "").strip() if env_name else ""
    return SecretStr(value) if value else None


def resolve_intake_tokens(intake: IntakeConfig, environ: Mapping[str, str]) -> list[SecretStr]:
    """The intake's bearer tokens (comma- or newline-separated) from ``tokens_file`` or
    ``$tokens_env``; a ``ConfigError`` naming the file or variable (never a token) when none."""
    what = "intake.tokens_file" if intake.tokens_file else f"intake.tokens_env ${intake.tokens_env}"
    secret = resolve_secret(intake.tokens_env, intake.tokens_file, environ, what)
    text = secret.get_secret_value() if secret is not None else ""
    tokens = [t.strip() for t in re.split(r"[,\n]", text) if t.strip()]
    if not tokens:
        raise ConfigError([f"{what}: no bearer tokens (comma-separated) found"])
    return [SecretStr(t) for t in tokens]


def default_store_file(cfg: PlannerConfig) -> Path | None:
    """The SQLite file of the default store (neither ``store.url`` nor ``store.url_env`` is
    set), known without parsing a URL; ``None`` when the user names the store by a URL."""
    if cfg.store.url is None and cfg.store.url_env is None:
        return cfg.store_path_default()
    return None


def resolve_store_url(cfg: PlannerConfig, environ: Mapping[str, str]) -> str:
    """The SQLAlchemy URL: ``store.url``, else ``$store.url_env``, else SQLite under state_dir.

    (A relative SQLite path in ``store.url`` was already made absolute against the config
    file's folder at load.)
    """
    if cfg.store.url_env is not None:
        url = environ.get(cfg.store.url_env, "")
        if not url:
            raise ConfigError(
                [f"store.url_env: ${cfg.store.url_env} is not set in the environment"]
            )
        return url
    if cfg.store.url is None:  # the default store (``default_store_file``)
        return f"sqlite:///{cfg.store_path_default()}"
    return cfg.store.url
