"""`k8sboot validate` on cluster files made by mutating the valid examples: whatever the
file holds, the answer is "valid" or one line per problem with exit 2, never a traceback,
and quickly. One run per class of damage, so that every class is exercised every run."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sboot.cli.app import cli

from .conftest import BASE, EXAMPLES

CASES_PER_CLASS = 50  # 12 classes: 600 files a run
SECONDS_PER_CASE = 5.0  # a file is checked in milliseconds; this only catches a hang

SEEDS = [BASE, *(yaml.safe_load(p.read_text()) for p in EXAMPLES)]
FIELD_NAMES = [
    "apiVersion",
    "kind",
    "name",
    "hosts",
    "address",
    "roles",
    "nodeIP",
    "ssh",
    "port",
    "user",
    "connectTimeout",
    "kubernetes",
    "version",
    "networking",
    "podSubnet",
    "controlPlaneEndpoint",
    "type",
    "etcd",
    "topology",
    "containerRuntime",
    "registryMirrors",
    "backup",
    "retention",
    "last",
    "encryptionKeyFile",
    "packages",
    "stateDir",
]

# Raw YAML, put into the file as written.
huge_ints = st.integers(min_value=19, max_value=6000).flatmap(
    lambda digits: st.sampled_from([f"{'9' * digits}", f"-{'1' * digits}", f"0x{'f' * digits}"])
)
floats = st.floats(allow_nan=True, allow_infinity=True).map(
    lambda f: (
        ".nan" if math.isnan(f) else (".inf" if f > 0 else "-.inf") if math.isinf(f) else repr(f)
    )
) | st.sampled_from(["1e400", "-0.0", "22.0", "1.", ".5", "6443.0001"])
yaml11_words = st.sampled_from(
    ["yes", "no", "on", "off", "y", "n", "Yes", "ON", "true", "False", "TRUE", "~", "null", "1:30",
     "0x16", "0o17", "010", "1_000", "0b101", "+12", "2001-12-14", "=", "<<"]
)  # fmt: skip
tagged = st.sampled_from(
    ["!!int abc", "!!int ''", "!!float x", "!!bool maybe", "!!binary '!!'", "!!set {a, b}",
     "!!timestamp x", "!!omap [a]", "!!python/object:os.system x", "!unknown x", "!!str 1",
     "!!merge x", "&a [1, 2]", "*nowhere"]
)  # fmt: skip
plain_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=20).map(json.dumps),
    st.sampled_from(["''", "null", "10.0.0.11", "control-plane", "1.33.1", "flannel", "22"]),
)
wrong_types = st.recursive(
    plain_scalars | yaml11_words | floats,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        st.lists(st.tuples(st.sampled_from(FIELD_NAMES), inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=8,
)
unicode_text = st.text(min_size=1, max_size=30)
collection_keys = st.sampled_from(
    ["[a, b]", "[]", "{a: 1}", "{}", "[[1], {b: 2}]", "!!set {a}", "!!omap [{a: 1}]"]
)


def _slots(data: object) -> list[tuple[object, object]]:
    """Every (container, key-or-index) in a document, the root's keys included."""
    found: list[tuple[object, object]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((data, key))
            found += _slots(value)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.append((data, index))
            found += _slots(value)
    return found


def _mappings(data: object) -> list[dict]:
    found = [data] if isinstance(data, dict) else []
    children = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
    for child in children:
        found += _mappings(child)
    return found


@st.composite
def mutated(draw, values=None, keys=None, key_values=plain_scalars, unicode=False) -> str:
    """A seed with 1-3 of its values replaced from `values` or keys added from `keys` (with
    values from `key_values`), all raw YAML: markers hold their places while the seed is
    dumped in block style."""
    data = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    raw: dict[str, str] = {}

    def marker(replacement: str) -> str:
        name = f"fuzzmarker{len(raw)}x"
        raw[name] = replacement
        return name

    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if values is not None and (keys is None or draw(st.booleans())):
            container, slot = draw(st.sampled_from(_slots(data)))
            container[slot] = marker(draw(values))
        else:
            container = draw(st.sampled_from(_mappings(data)))
            container[marker(draw(keys))] = marker(draw(key_values))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=unicode, width=10_000)
    for name, replacement in raw.items():
        text = text.replace(name, replacement)
    return text


@st.composite
def unicode_file(draw) -> str:
    texts = unicode_text | unicode_text.map(json.dumps)  # raw in the file, or escaped
    text = draw(mutated(values=texts, keys=texts, key_values=texts, unicode=True))
    return ("\ufeff" if draw(st.booleans()) else "") + text


@st.composite
def multiple_documents(draw) -> str:
    first = yaml.safe_dump(draw(st.sampled_from(SEEDS)))
    second = draw(st.sampled_from(["", "a: 1\n", "...\n", first, "- x\n"]))
    return draw(st.sampled_from([f"{first}---\n{second}", f"---\n{first}...\n---\n{second}"]))


@st.composite
def invalid_yaml(draw) -> str:
    text = yaml.safe_dump(draw(st.sampled_from(SEEDS)), sort_keys=False)
    at = draw(st.integers(min_value=0, max_value=len(text)))
    junk = draw(st.text(alphabet=":{}[]-#&*!|>'\"%@`\t\n ,?\\\x00\x07", min_size=1, max_size=6))
    return draw(
        st.sampled_from(
            [
                text[:at] + junk + text[at:],  # inserted
                text[:at] + text[at + len(junk) :],  # cut out
                text[:at],  # truncated
                text.replace("\n  ", "\n\t", 1),  # a tab for indentation
            ]
        )
    )


CLASSES = {
    "huge ints": mutated(values=huge_ints, keys=huge_ints),
    "floats": mutated(values=floats),
    "bools and YAML 1.1 words": mutated(values=yaml11_words, keys=yaml11_words),
    "lists and maps as keys": mutated(keys=collection_keys),
    "merge keys": mutated(keys=st.just("<<"), key_values=wrong_types | st.just("*nowhere")),
    "nested wrong types": mutated(values=wrong_types),
    "unknown keys": mutated(
        keys=st.sampled_from(FIELD_NAMES) | st.text(max_size=12).map(json.dumps)
    ),
    "unicode": unicode_file(),
    "empty documents": st.sampled_from(["", "\n", "---\n", "---\n...\n", "# nothing\n", "~\n"]),
    "multiple documents": multiple_documents(),
    "invalid YAML": invalid_yaml(),
    "explicit tags": mutated(values=tagged, keys=tagged),
}


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "cluster.yaml"


@pytest.mark.parametrize("damage", list(CLASSES))
def test_validate_answers_any_file_in_one_line_per_problem(cluster_file: Path, damage: str) -> None:
    @settings(
        max_examples=CASES_PER_CLASS,
        deadline=None,  # timed below, against a bound that only a hang would reach
        derandomize=True,  # the same files every run
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(CLASSES[damage])
    def check(text: str) -> None:
        cluster_file.write_text(text, encoding="utf-8")
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["validate", "-f", str(cluster_file)])
        assert time.monotonic() - started < SECONDS_PER_CASE
        output = result.output
        assert result.exit_code in (0, 2), output
        assert "Traceback" not in output and "internal error" not in output, output
        lines = output.splitlines()
        assert lines, "no output"
        if result.exit_code == 0:
            assert lines[-1].startswith(f"{cluster_file}: valid: "), output
            assert all(line.startswith(f"warning: {cluster_file}: ") for line in lines[:-1])
        elif lines[0].startswith("error: "):  # the file is not YAML a spec can come from
            assert len(lines) == 1, output
        else:  # one line per problem in the spec
            assert all(line.startswith(f"{cluster_file}: ") for line in lines), output

    check()
