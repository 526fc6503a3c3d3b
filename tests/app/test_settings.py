"""Settings: TOML keys, defaults, overrides, and errors that name the key."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import LOUPE, ROOT
from peers import peer_env
from pynetdicom import AE

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
        ("[local]\nmax_associations = 0", "local.max_associations = 0: use 1 to 1000"),
        ('[local]\nmax_associations = "10"', "local.max_associations must be int"),
        ("[local]\nmax_associations = 2.5", "local.max_associations must be int"),
        ("[local]\nartim_s = 0", "local.artim_s = 0: use 1 to 300 seconds"),
        ("[local]\nartim_s = true", "local.artim_s must be int or float, not True"),
        ('[local]\npdu_timeout_s = "60"', "local.pdu_timeout_s must be int or float"),
        ("[local]\npdu_timeout_s = 86400", "local.pdu_timeout_s = 86400: use 1 to 3600 seconds"),
        ("[local]\ntls = true", "local.tls must be dict"),
        ('[local]\ntls = { key = "k.pem" }', "local.tls.cert is missing: set it to the PEM"),
        ('[local]\ntls = { cert = "c.pem", crt = "c.pem" }', "local.tls: unknown key 'crt'"),
        ('[local]\ntls = { cert = "nope.pem", key = "k.pem" }', "local.tls.cert = 'nope.pem': no"),
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


def test_local_tls_paths_are_relative_to_the_settings_file(tmp_path):
    for name in ("server.pem", "server.key", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    cfg = tmp_path / "loupe.toml"
    cfg.write_text('[local]\ntls = { cert = "server.pem", key = "server.key" }\n')
    tls = load_settings(cfg).local.tls
    assert tls is not None and (tls.cert_file, tls.key_file) == (
        tmp_path / "server.pem",
        tmp_path / "server.key",
    )
    assert (tls.ca_file, tls.require_client_cert) == (None, False)
    assert parse_settings({}).local.tls is None  # plain DICOM unless asked
    cfg.write_text(
        '[local]\ntls = { cert = "server.pem", key = "server.key", require_client_cert = true }\n'
    )
    with pytest.raises(SettingsError, match=r"local\.tls\.ca is missing: set it to the PEM CA"):
        load_settings(cfg)
    cfg.write_text(
        '[local]\ntls = { cert = "server.pem", key = "server.key", ca = "ca.pem", '
        "require_client_cert = true }\n"
    )
    tls = load_settings(cfg).local.tls
    assert tls is not None and (tls.ca_file, tls.require_client_cert) == (tmp_path / "ca.pem", True)


def test_receiver_limits_come_from_local(tmp_path):
    cfg = tmp_path / "loupe.toml"
    cfg.write_text("[local]\nmax_associations = 4\nartim_s = 2.5\npdu_timeout_s = 30\n")
    limits = load_settings(cfg).receiver_limits
    assert (limits.max_associations, limits.artim_s, limits.pdu_timeout_s) == (4, 2.5, 30.0)
    default = parse_settings({}).receiver_limits  # receiver_limits.py's defaults
    assert (default.max_associations, default.artim_s, default.pdu_timeout_s) == (10, 10.0, 60.0)


@pytest.mark.network
def test_serve_applies_the_receiver_limits_of_the_settings(loupe):
    """`loupe serve` with max_associations = 1: while one association is open, the next is
    rejected "transient, service provider (presentation), local limit exceeded" (2, 3, 2)."""
    loupe.write_config(allowed_callers=["SCU"])
    text = loupe.config.read_text().replace("[local]\n", "[local]\nmax_associations = 1\n", 1)
    loupe.config.write_text(text)
    env = {**peer_env(), "LOUPE_HOME": str(loupe.home), "PYTHONPATH": str(ROOT)}
    serve = subprocess.Popen(
        [*LOUPE, "serve", "--config", str(loupe.config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ae = AE(ae_title="SCU")
        ae.add_requested_context("1.2.840.10008.1.1")  # Verification
        deadline = time.monotonic() + 60
        first = ae.associate("127.0.0.1", loupe.port, ae_title="LOUPE")
        while not first.is_established and time.monotonic() < deadline:
            time.sleep(0.2)  # still starting
            first = ae.associate("127.0.0.1", loupe.port, ae_title="LOUPE")
        assert first.is_established
        second = ae.associate("127.0.0.1", loupe.port, ae_title="LOUPE")
        assert second.is_rejected
        rj = second.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (2, 3, 2)
        first.release()
        # The slot comes back once the receiver's thread has seen the release through, a
        # moment after the A-RELEASE-RP.
        deadline = time.monotonic() + 10
        third = ae.associate("127.0.0.1", loupe.port, ae_title="LOUPE")
        while third.is_rejected and time.monotonic() < deadline:
            time.sleep(0.1)
            third = ae.associate("127.0.0.1", loupe.port, ae_title="LOUPE")
        assert third.is_established
        third.release()
    finally:
        serve.terminate()
        serve.wait(10)


def test_relative_storage_is_relative_to_the_settings_file(tmp_path):
    s = parse_settings({"local": {"storage": "arch"}}, source=tmp_path / "loupe.toml")
    assert s.storage == (tmp_path / "arch").resolve()
    assert Path(s.storage).is_absolute()
