"""Settings: TOML keys, defaults, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings, parse_settings
from dicom_net.nodes import RetrieveMethod

EXAMPLE = """
[local]
ae_title = "LOUPE"
port = 11112
storage = "{storage}"
allowed_callers = ["ORTHANC"]
fast_store = true

[[nodes]]
name = "pacs"
ae_title = "ORTHANC"
host = "127.0.0.1"
port = 4242
retrieve = "move"
move_streams = 2

[[nodes]]
name = "backup"
ae_title = "BACKUP"
host = "10.0.0.2"
port = 104
retrieve = "get"
"""


def test_readme_example_loads(tmp_path):
    cfg = tmp_path / "loupe.toml"
    cfg.write_text(EXAMPLE.format(storage=tmp_path / "arch"))
    s = load_settings(cfg)
    assert (s.local.ae_title, s.local.port, s.storage) == ("LOUPE", 11112, tmp_path / "arch")
    assert s.local.allowed_callers == ("ORTHANC",)
    assert [n.name for n in s.nodes] == ["pacs", "backup"]
    assert s.node("backup").retrieve is RetrieveMethod.GET and s.node("pacs").port == 4242
    assert s.node_for_ae("BACKUP") == "backup"
    assert s.local.fast_store is True and s.node("pacs").move_streams == 2


def test_defaults_and_loupe_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path))
    s = load_settings()  # no file: all defaults, under LOUPE_HOME
    assert s.source is None and s.local.ae_title == "LOUPE" and s.local.port == 11112
    assert s.storage == tmp_path / "archive"
    (tmp_path / "loupe.toml").write_text(
        '[local]\nport = 11200\n[[nodes]]\nname = "p"\nae_title = "PACS1"\nhost = "h"\nport = 104\n'
    )
    s = load_settings()
    assert s.local.port == 11200
    assert s.local.allowed_callers == ("PACS1",)  # default: the configured nodes' AE titles


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[local]\nport = "11112"', "local.port must be int"),
        ("[local]\nport = 70000", "local.port = 70000"),
        ('[local]\nae_title = "THIS-TITLE-IS-TOO-LONG"', "local.ae_title"),
        ("[local]\nprot = 1", "unknown key 'prot'"),
        ('[[nodes]]\nname = "p"\nhost = "h"\nport = 1', "nodes[0] (p).ae_title is missing"),
        (
            '[[nodes]]\nname = "p"\nae_title = "P"\nhost = "h"\nport = 1\nretrieve = "push"',
            "nodes[0] (p).retrieve = 'push'",
        ),
        (
            '[[nodes]]\nname = "p"\nae_title = "P"\nhost = "h"\nport = 1\n'
            '[[nodes]]\nname = "p"\nae_title = "Q"\nhost = "h"\nport = 2',
            "used by two nodes",
        ),
        ("[local]\nallowed_callers = [1]", "local.allowed_callers[0] must be a string"),
        ('[local]\nfast_store = "yes"', "local.fast_store must be bool"),
        (
            '[[nodes]]\nname = "p"\nae_title = "P"\nhost = "h"\nport = 1\nmove_streams = 0',
            "nodes[0] (p).move_streams = 0: use 1 to 8",
        ),
        ("[local\n", "not valid TOML"),
        ("[inference]\nanalyze_on_open = 1", "inference.analyze_on_open must be bool"),
        ('[report]\ndestination = "nowhere"', "report.destination = 'nowhere' is not a configured"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path, toml, named):
    cfg = tmp_path / "loupe.toml"
    cfg.write_text(toml)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert named in str(info.value) and str(cfg) in str(info.value)


def test_cli_reports_bad_settings_in_one_line(loupe):
    loupe.home.mkdir(parents=True)
    loupe.config.write_text('[local]\nport = "x"\n')
    r = loupe.run("nodes")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "local.port must be int" in line


def test_unknown_node_lists_known_ones(loupe):
    loupe.write_config('[[nodes]]\nname = "pacs"\nae_title = "P"\nhost = "h"\nport = 104\n')
    r = loupe.run("echo", "nope")
    assert r.returncode == 2 and "unknown node 'nope' (known: pacs)" in r.stderr


def test_relative_storage_is_relative_to_the_settings_file(tmp_path):
    s = parse_settings({"local": {"storage": "arch"}}, source=tmp_path / "loupe.toml")
    assert s.storage == (tmp_path / "arch").resolve()
    assert Path(s.storage).is_absolute()
