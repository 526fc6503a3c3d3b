"""DICOM application entities Loupe talks to: itself (local) and the PACS nodes (remote)."""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass, field
from pathlib import Path

# Parallel C-MOVE associations for one retrieve (instance lists split between them).
DEFAULT_MOVE_STREAMS = 2
MAX_MOVE_STREAMS = 8


class RetrieveMethod(enum.StrEnum):
    """How a study is pulled from a node: C-MOVE into our SCP, or C-GET on one association."""

    MOVE = "move"
    GET = "get"


@dataclass(frozen=True)
class TlsOptions:
    """TLS for DICOM associations (PS3.15 B.1): CA to verify the peer, optional client cert."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify_hostname: bool = True

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        ctx.check_hostname = self.verify_hostname
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@dataclass(frozen=True)
class ReceiverTlsOptions:
    """TLS for our storage port ([local] tls): our certificate, and the CA that signs the
    client certificates we accept (required of every caller when require_client_cert)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = False

    def __post_init__(self) -> None:
        if self.require_client_cert and self.ca_file is None:
            raise ValueError("require_client_cert needs ca_file (the CA of the client certs)")

    def server_context(self) -> ssl.SSLContext:
        """Server side, TLS 1.2 or later (BCP 195, PS3.15 B.9: older versions are deprecated)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=self.ca_file)
        if self.require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif self.ca_file is not None:
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


@dataclass(frozen=True)
class RemoteNode:
    """A PACS or modality as configured in settings ([[nodes]])."""

    name: str
    ae_title: str
    host: str
    port: int
    retrieve: RetrieveMethod = RetrieveMethod.MOVE
    # How many C-MOVEs one retrieve runs at once (each for part of the instance list);
    # 1 = one study/series-level C-MOVE, for PACS that limit associations or UID lists.
    move_streams: int = DEFAULT_MOVE_STREAMS
    tls: TlsOptions | None = None

    def describe(self) -> str:
        return f"'{self.name}' ({self.ae_title}@{self.host}:{self.port})"


@dataclass(frozen=True)
class LocalNode:
    """Loupe's own AE: the title it calls with and the port its storage SCP listens on."""

    ae_title: str = "LOUPE"
    port: int = 11112
    bind: str = "0.0.0.0"
    allowed_callers: tuple[str, ...] = field(default_factory=tuple)
    # Plain storage associations skip pynetdicom's acceptor (dicom_net/fast_store.py).
    fast_store: bool = True
    # When set, the storage port speaks TLS only, on both receive paths (tls_receiver.py).
    tls: ReceiverTlsOptions | None = None
