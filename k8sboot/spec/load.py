"""Read a cluster file into a validated Cluster, or fail with one line per problem."""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from k8sboot.errors import SpecError, UserError
from k8sboot.spec.checks import Finding, check
from k8sboot.spec.model import API_VERSION, Cluster


@dataclass
class LoadedSpec:
    cluster: Cluster
    path: Path
    warnings: list[Finding] = field(default_factory=list)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that reads scalars by YAML 1.2's core schema and refuses a key given
    twice in one mapping (the last would win).

    YAML 1.1 (PyYAML's default) reads `yes`, `on` and `no` as booleans and `1:30` as 90,
    so `port: yes` would become port 1; under the core schema they stay strings, and the
    schema says what is wrong with them."""

    yaml_implicit_resolvers: typing.ClassVar[dict] = {}

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception:
            # A value its explicit tag cannot read, like `!!float abc` or `!!bool maybe`.
            value = f"{_show(node.value)} " if isinstance(node, yaml.ScalarNode) else ""
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {value}as {tag}", node.start_mark
            ) from None


_CORE_SCHEMA = [
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)",
        list("-+.0123456789"),
    ),
]
for _tag, _pattern, _first in _CORE_SCHEMA:
    _UniqueKeyLoader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)

# Nothing in a cluster file needs more; Python refuses to read numbers past 4300 digits.
MAX_DIGITS = 100


def _construct_int(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if len(digits) > MAX_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number of {len(digits)} digits is too large", node.start_mark
        )
    base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
    return sign * int(digits[2:] if base != 10 else digits, base)


def _construct_str(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> str:
    """A string, with JSON's escapes of characters past U+FFFF ("\\ud83d\\ude00") read as
    the one character they stand for; PyYAML would keep two halves that are no text."""
    text = str(loader.construct_scalar(node))
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise yaml.constructor.ConstructorError(
            None, None, "a \\u escape of half a character (U+D800 to U+DFFF)", node.start_mark
        ) from None


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or (
            isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and not key_node.style
        ):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "YAML merge keys (<<) are not supported; write the keys out",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, typing.Hashable):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a single value, not {_kind_of(key)}",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {_show(key)} appears twice", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply") from None


def _yaml_error(exc: yaml.YAMLError, source: str) -> UserError:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return UserError(f"{source}: not valid YAML ({_one_line(exc)})")
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    if exc.context == "expected a single document in the stream":
        return UserError(f"{where}: a second YAML document; a cluster file holds one")
    return UserError(f"{where}: {_one_line(exc.problem or exc.context)}")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def load_spec(
    path: Path, *, hosts: list[dict] | None = None, defaults: dict | None = None
) -> LoadedSpec:
    """Load and validate a cluster file.

    `hosts` replaces the file's hosts (e.g. the machines of a Vagrant environment); the
    file may then be absent. `defaults` fills top-level keys the file does not set.
    """
    refuse_directory(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if hosts is None:
            raise UserError(
                f"{path}: no such file; write one with `k8sboot init` or pass -f FILE"
            ) from None
        text = f"apiVersion: {API_VERSION}\nkind: Cluster\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    return spec_from_text(text, path, hosts=hosts, defaults=defaults)


def refuse_directory(path: Path) -> None:
    if path.is_dir():
        raise UserError(
            f"{path} is a directory; -f takes the cluster file, like {path / 'cluster.yaml'}"
        )


def spec_from_text(
    text: str, path: Path, *, hosts: list[dict] | None = None, defaults: dict | None = None
) -> LoadedSpec:
    data = parse_yaml(text, str(path))
    if isinstance(data, dict):
        data = {**(defaults or {}), **data}
        if hosts is not None:
            data["hosts"] = hosts
    base_dir = path.resolve().parent
    cluster = spec_from_data(data, base_dir)
    findings = check(cluster)
    errors = [str(f) for f in findings if f.severity == "error"]
    if errors:
        raise SpecError(errors)
    if cluster.state_dir is None:
        cluster.state_dir = base_dir / ".k8sboot" / cluster.name
    if cluster.backup.directory is None:
        cluster.backup.directory = cluster.state_dir / "backups"
    warnings = [f for f in findings if f.severity == "warning"]
    return LoadedSpec(cluster=cluster, path=path, warnings=warnings)


def spec_from_data(data: Any, base_dir: Path) -> Cluster:
    if not isinstance(data, dict):
        raise SpecError(
            [
                f"expected a mapping with apiVersion: {API_VERSION} and kind: Cluster, "
                f"found {_kind_of(data)}"
            ]
        )
    try:
        return Cluster.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise SpecError([_describe(error) for error in exc.errors()]) from None
    except RecursionError:
        raise SpecError(["nested too deeply"]) from None


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    path = format_path(loc) or "(top level)"
    return f"{path}: {_message(error, loc)}"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def format_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a mapping's key; the key itself precedes it
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{str(part)!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Any, loc: tuple) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "k8sboot":
        return ctx["message"]
    if kind == "missing":
        return "required"
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: one that is no string
        return "unknown key" + _suggestion(loc)
    if kind == "literal_error":
        return f"{_show(value)} is not one of {ctx.get('expected', '')}"
    if kind in ("string_type", "string_sub_type"):
        return f"{_show(value)} is not a string"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{_show(value)} is not a whole number"
    if kind in ("bool_type", "bool_parsing"):
        return f"{_show(value)} is not true or false"
    if kind == "list_type":
        return f"expected a list, found {_kind_of(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, found {_kind_of(value)}"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        relation = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        return f"{_show(value)} must be {relation} {bound}"
    if kind == "path_type":
        return f"{_show(value)} is not a file path"
    return f"{_show(value)}: {error['msg']}"


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return _kind_of(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _suggestion(loc: tuple) -> str:
    model = _model_at(Cluster, loc[:-1])
    if model is None:
        return ""
    known = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})"


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        if part == "[key]":  # pydantic's marker for a mapping's key; the key itself precedes it
            continue
        if isinstance(part, int):
            continue
        field_info = next(
            (f for name, f in model.model_fields.items() if (f.alias or name) == part), None
        )
        if field_info is None:
            return None
        found = _inner_model(field_info.annotation)
        if found is None:
            return None
        model = found
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None
