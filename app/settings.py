"""Loupe settings: one TOML file. Default in the user's config dir; LOUPE_HOME or --config override.

Every error names the key and says what is expected, so a PACS administrator can fix the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from dicom_net.nodes import (
    DEFAULT_MOVE_STREAMS,
    MAX_MOVE_STREAMS,
    LocalNode,
    ReceiverTlsOptions,
    RemoteNode,
    RetrieveMethod,
    TlsOptions,
)
from dicom_net.receiver_limits import ReceiverLimits

# What [local] may set of the receiver's limits (dicom_net/receiver_limits.py): bounds that
# keep a typo from making the receiver useless (an ARTIM of 0.001 s) or unbounded.
_MAX_ASSOCIATIONS_RANGE = (1, 1000)
_SECONDS_RANGE = {"artim_s": (1.0, 300.0), "pdu_timeout_s": (1.0, 3600.0)}

APP_NAME = "loupe"
_AE_RE = re.compile(r"^[^\\\x00-\x1f]{1,16}$")


class SettingsError(Exception):
    """The settings file is missing, unreadable or has an invalid key (named in the message)."""


@dataclass(frozen=True)
class Settings:
    local: LocalNode
    storage: Path
    nodes: tuple[RemoteNode, ...]
    user: str
    source: Path | None  # the file read, None when all defaults
    extra: dict[str, Any] = field(default_factory=dict)
    # [local] max_associations, artim_s, pdu_timeout_s: give them to every StorageServer.
    receiver_limits: ReceiverLimits = field(default_factory=ReceiverLimits)

    def node(self, name: str) -> RemoteNode:
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes) or "none configured"
        raise SettingsError(
            f"unknown node {name!r} (known: {known}); add a [[nodes]] entry to "
            f"{self.source or default_config_path()}"
        )

    def nodes_by_name(self) -> dict[str, RemoteNode]:
        return {n.name: n for n in self.nodes}

    @property
    def organization(self) -> str:
        """The readers' organisation ([report] organization), named in signed reports."""
        return str(self.extra.get("report", {}).get("organization", ""))

    def node_for_ae(self, ae_title: str) -> str | None:
        for n in self.nodes:
            if n.ae_title == ae_title:
                return n.name
        return None


def loupe_home() -> Path | None:
    home = os.environ.get("LOUPE_HOME")
    return Path(home).expanduser() if home else None


def default_config_path() -> Path:
    home = loupe_home()
    if home is not None:
        return home / "loupe.toml"
    return Path(platformdirs.user_config_dir(APP_NAME)) / "loupe.toml"


def default_storage() -> Path:
    home = loupe_home()
    if home is not None:
        return home / "archive"
    return Path(platformdirs.user_data_dir(APP_NAME)) / "archive"


def _expect(
    table: dict[str, Any],
    key: str,
    typ: type | tuple[type, ...],
    where: str,
    default: Any = None,
    required: bool = False,
) -> Any:
    if key not in table:
        if required:
            raise SettingsError(f"{where}.{key} is missing")
        return default
    value = table[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise SettingsError(f"{where}.{key} must be {names}, not {value!r}")
    return value


def _ae(value: str, key: str) -> str:
    value = value.strip()
    if not _AE_RE.match(value):
        raise SettingsError(
            f"{key} = {value!r} is not a valid AE title (1-16 characters, no backslash "
            "or control characters)"
        )
    return value


def _port(value: int, key: str) -> int:
    if not 1 <= value <= 65535:
        raise SettingsError(f"{key} = {value} is not a TCP port (1-65535)")
    return value


def _receiver_limits(local_t: dict[str, Any]) -> ReceiverLimits:
    default = ReceiverLimits()
    low, high = _MAX_ASSOCIATIONS_RANGE
    max_associations = _expect(local_t, "max_associations", int, "local", default.max_associations)
    if not low <= max_associations <= high:
        raise SettingsError(
            f"local.max_associations = {max_associations}: use {low} to {high} "
            "(associations received at once, all callers together)"
        )
    seconds: dict[str, float] = {}
    for key, (low_s, high_s) in _SECONDS_RANGE.items():
        value = _expect(local_t, key, (int, float), "local", getattr(default, key))
        if isinstance(value, bool):
            raise SettingsError(f"local.{key} must be int or float, not {value!r}")
        if not low_s <= value <= high_s:
            raise SettingsError(f"local.{key} = {value}: use {low_s:g} to {high_s:g} seconds")
        seconds[key] = float(value)
    return ReceiverLimits(max_associations=max_associations, **seconds)


def _receiver_tls(local_t: dict[str, Any], source: Path | None) -> ReceiverTlsOptions | None:
    """[local] tls: the storage port becomes TLS-only. Paths are absolute or relative to the
    settings file."""
    tls_t = _expect(local_t, "tls", dict, "local", None)
    if tls_t is None:
        return None
    where = "local.tls"
    _unknown_keys(tls_t, {"cert", "key", "ca", "require_client_cert"}, where)
    require = _expect(tls_t, "require_client_cert", bool, where, False)

    def pem(key: str, required: bool, why: str) -> Path | None:
        value = _expect(tls_t, key, str, where, None)
        if value is None:
            if required:
                raise SettingsError(f"{where}.{key} is missing: set it to {why}")
            return None
        path = Path(value).expanduser()
        if source is not None and not path.is_absolute():
            path = (source.parent / path).resolve()
        if not path.is_file():
            raise SettingsError(
                f"{where}.{key} = {value!r}: no such file ({path}); set it to {why}"
            )
        return path

    cert = pem("cert", True, "the PEM certificate this receiver presents to callers")
    key = pem("key", True, "the PEM private key of that certificate")
    ca = pem(
        "ca",
        require,
        "the PEM CA certificate that signs the callers' client certificates "
        "(required with require_client_cert = true)",
    )
    assert cert is not None and key is not None
    return ReceiverTlsOptions(cert_file=cert, key_file=key, ca_file=ca, require_client_cert=require)


def _unknown_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise SettingsError(
            f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def parse_settings(data: dict[str, Any], *, source: Path | None = None) -> Settings:
    _unknown_keys(data, {"local", "nodes", "user", "viewer", "inference", "report"}, "settings")
    local_t = _expect(data, "local", dict, "settings", default={})
    _unknown_keys(
        local_t,
        {
            "ae_title",
            "port",
            "storage",
            "allowed_callers",
            "bind",
            "fast_store",
            "max_associations",
            "artim_s",
            "pdu_timeout_s",
            "tls",
        },
        "[local]",
    )
    ae_title = _ae(_expect(local_t, "ae_title", str, "local", "LOUPE"), "local.ae_title")
    port = _port(_expect(local_t, "port", int, "local", 11112), "local.port")
    bind = _expect(local_t, "bind", str, "local", "0.0.0.0")
    fast_store = _expect(local_t, "fast_store", bool, "local", True)
    receiver_limits = _receiver_limits(local_t)
    receiver_tls = _receiver_tls(local_t, source)
    storage_s = _expect(local_t, "storage", str, "local", None)
    storage = Path(storage_s).expanduser() if storage_s else default_storage()
    if source is not None and not storage.is_absolute():
        storage = (source.parent / storage).resolve()

    nodes: list[RemoteNode] = []
    raw_nodes = _expect(data, "nodes", list, "settings", default=[])
    seen: set[str] = set()
    for i, nt in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        if not isinstance(nt, dict):
            raise SettingsError(f"{where} must be a table ([[nodes]])")
        _unknown_keys(
            nt, {"name", "ae_title", "host", "port", "retrieve", "move_streams", "tls"}, where
        )
        name = _expect(nt, "name", str, where, required=True).strip()
        if not name:
            raise SettingsError(f"{where}.name must not be empty")
        if name in seen:
            raise SettingsError(f"{where}.name = {name!r} is used by two nodes")
        seen.add(name)
        where = f"nodes[{i}] ({name})"
        retrieve_s = _expect(nt, "retrieve", str, where, "move")
        try:
            retrieve = RetrieveMethod(retrieve_s)
        except ValueError:
            raise SettingsError(f'{where}.retrieve = {retrieve_s!r}: use "move" or "get"') from None
        move_streams = _expect(nt, "move_streams", int, where, DEFAULT_MOVE_STREAMS)
        if not 1 <= move_streams <= MAX_MOVE_STREAMS:
            raise SettingsError(
                f"{where}.move_streams = {move_streams}: use 1 to {MAX_MOVE_STREAMS} "
                "(1 = one C-MOVE per retrieve)"
            )
        tls = None
        tls_t = _expect(nt, "tls", (dict, bool), where, None)
        if tls_t is True:
            tls = TlsOptions()
        elif isinstance(tls_t, dict):
            _unknown_keys(tls_t, {"ca", "cert", "key", "verify_hostname"}, f"{where}.tls")

            def _p(k: str, t: dict[str, Any] = tls_t, w: str = where) -> Path | None:
                v = _expect(t, k, str, f"{w}.tls", None)
                if v is None:
                    return None
                path = Path(v).expanduser()
                if not path.exists():
                    raise SettingsError(f"{w}.tls.{k} = {v!r}: no such file")
                return path

            tls = TlsOptions(
                ca_file=_p("ca"),
                cert_file=_p("cert"),
                key_file=_p("key"),
                verify_hostname=_expect(tls_t, "verify_hostname", bool, f"{where}.tls", True),
            )
        nodes.append(
            RemoteNode(
                name=name,
                ae_title=_ae(
                    _expect(nt, "ae_title", str, where, required=True), f"{where}.ae_title"
                ),
                host=_expect(nt, "host", str, where, required=True),
                port=_port(_expect(nt, "port", int, where, required=True), f"{where}.port"),
                retrieve=retrieve,
                move_streams=move_streams,
                tls=tls,
            )
        )

    callers_v = _expect(local_t, "allowed_callers", list, "local", None)
    if callers_v is None:
        callers = tuple(dict.fromkeys(n.ae_title for n in nodes))
    else:
        callers = tuple(
            c if c == "*" else _ae(c, f"local.allowed_callers[{i}]")
            for i, c in enumerate(callers_v)
            if isinstance(c, str) or _raise(f"local.allowed_callers[{i}] must be a string")
        )
    inference_t = _expect(data, "inference", dict, "settings", default={})
    _unknown_keys(inference_t, {"analyze_on_open"}, "[inference]")
    _expect(inference_t, "analyze_on_open", bool, "inference", True)
    report_t = _expect(data, "report", dict, "settings", default={})
    _unknown_keys(report_t, {"destination", "organization"}, "[report]")
    destination = _expect(report_t, "destination", str, "report", None)
    organization = _expect(report_t, "organization", str, "report", "")
    if len(organization) > 64:
        raise SettingsError(
            f"report.organization is {len(organization)} characters: DICOM allows 64 "
            "(Verifying Organization, LO)"
        )
    if destination is not None and destination not in seen:
        raise SettingsError(
            f"report.destination = {destination!r} is not a configured node "
            f"(nodes: {', '.join(sorted(seen)) or 'none'})"
        )
    viewer_t = _expect(data, "viewer", dict, "settings", default={})
    _unknown_keys(viewer_t, set(), "[viewer]")
    user = _expect(data, "user", str, "settings", None) or os.environ.get("USER") or "reader"
    return Settings(
        local=LocalNode(
            ae_title=ae_title,
            port=port,
            bind=bind,
            allowed_callers=callers,
            fast_store=fast_store,
            tls=receiver_tls,
        ),
        storage=storage,
        nodes=tuple(nodes),
        user=user,
        source=source,
        extra={k: v for k, v in data.items() if k in ("viewer", "inference", "report")},
        receiver_limits=receiver_limits,
    )


def _raise(msg: str) -> bool:
    raise SettingsError(msg)


def load_settings(path: Path | None = None) -> Settings:
    """Read `path` (or the default file). A missing default file means all defaults."""
    explicit = path is not None
    path = Path(path).expanduser() if path is not None else default_config_path()
    if not path.exists():
        if explicit:
            raise SettingsError(f"settings file {path} does not exist")
        return parse_settings({}, source=None)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return parse_settings(data, source=path)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
