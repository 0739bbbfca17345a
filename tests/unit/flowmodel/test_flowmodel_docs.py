"""The README documents every config key, with its default, in a table generated from SETTINGS
(Datasette's habit). ``python tests/unit/flowmodel/test_flowmodel_docs.py`` prints the table;
with ``--write`` it replaces the table in README.md (between the config-table markers)."""
import re
import sys
from pathlib import Path

import pytest

from flowmodel.config import SETTINGS

README = Path(__file__).resolve().parents[3] / "README.md"


def _default(value) -> str:
    """A default as one writes it in the YAML file: false, not False; (empty) for an empty list too."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(value) or "(empty)"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value)}"
    return "(empty)" if value == "" else str(value)


def config_table() -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | `{_default(s.default)}` | {s.doc} |" for key, s in SETTINGS.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_every_setting_is_documented(readme, key):
    assert f"| `{key}` |" in readme, f"README.md does not document {key}"


def test_readme_table_matches_settings(readme):
    assert config_table() in readme, "README.md's config table is stale: python tests/unit/flowmodel/test_flowmodel_docs.py"


def test_every_default_reads_as_yaml():
    table = config_table()
    assert "| `` |" not in table and "`False`" not in table and "`True`" not in table
    assert "| `notify.targets` | `(empty)` |" in table and "| `names.reverse_dns` | `false` |" in table


def test_readme_names_the_commands_and_env_form(readme):
    for text in ("make run", "make test", "FLOWLENS_STORAGE__SQLITE_PATH", "flowlens query", "flowlens replay",
                 "docker compose -f deploy/docker-compose.yml up", "StoreClient("):
        assert text in readme, text


def write_table() -> None:
    text = README.read_text(encoding="utf-8")
    start = re.search(r"<!-- config-table:[^\n]*-->\n", text)
    end = text.index("<!-- config-table: end -->")
    README.write_text(text[:start.end()] + config_table() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    write_table() if "--write" in sys.argv else print(config_table(), end="")
