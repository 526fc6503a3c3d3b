"""DICOM application entities Loupe talks to: itself (local) and the PACS nodes (remote)."""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass, field
from pathlib import Path


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
class RemoteNode:
    """A PACS or modality as configured in settings ([[nodes]])."""

    name: str
    ae_title: str
    host: str
    port: int
    retrieve: RetrieveMethod = RetrieveMethod.MOVE
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
