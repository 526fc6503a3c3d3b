"""Application entities and associations, with pynetdicom set up the way Loupe needs it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pynetdicom.acse
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from dicom_net.contexts import negotiate_storage
from dicom_net.errors import AssociationRejected, NodeUnreachable
from dicom_net.nodes import LocalNode, RemoteNode
from dicom_net.receiver_limits import PDU_TIMEOUT_S

# Identifiers carry patient names and IDs: never log them by default.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
# Accept private and future storage SOP classes, as archives must.
_config.UNRESTRICTED_STORAGE_SERVICE = True
# ... but only in the transfer syntaxes we store (contexts.py): pynetdicom's unrestricted
# negotiation accepts whatever syntax a storage context lists first, and has no setting for
# that. Its acceptor calls this function by its name in pynetdicom.acse, so the fast path
# (fast_store.py) and pynetdicom's acceptor answer a proposal alike.
pynetdicom.acse.negotiate_unrestricted = negotiate_storage  # type: ignore[attr-defined]
# C-STORE data sets received through pynetdicom (its acceptor, and C-GET) go to a temporary
# file as they arrive instead of memory; StoreIngest copies them into the archive in pieces.
_config.STORE_RECV_CHUNKED_DATASET = True

log = logging.getLogger(__name__)

# 0 = no limit on the PDUs we receive: fewer, larger reads
# (measured: a 100-slice C-MOVE took 0.73 s instead of 0.89 s).
RECEIVE_MAX_PDU = 0
# What we ask peers to accept from us: Orthanc and DCMTK top out at 128 KiB.
SEND_MAX_PDU = 131072

ACSE_TIMEOUT_S = 15.0
# A C-MOVE of a large study can be silent for longer than pynetdicom's 30 s default.
DIMSE_TIMEOUT_S = 300.0
NETWORK_TIMEOUT_S = PDU_TIMEOUT_S  # without a PDU this long, an association is aborted
CONNECT_TIMEOUT_S = 5.0


def make_ae(local: LocalNode) -> AE:
    ae = AE(ae_title=local.ae_title)
    ae.acse_timeout = ACSE_TIMEOUT_S
    ae.dimse_timeout = DIMSE_TIMEOUT_S
    ae.network_timeout = NETWORK_TIMEOUT_S
    ae.connection_timeout = CONNECT_TIMEOUT_S
    ae.maximum_pdu_size = RECEIVE_MAX_PDU
    return ae


def associate(
    local: LocalNode,
    node: RemoteNode,
    contexts: Sequence[PresentationContext],
    *,
    ext_neg: list[Any] | None = None,
    handlers: list[Any] | None = None,
) -> Association:
    """Open an association to `node`, or raise an error that says what to fix."""
    ae = make_ae(local)
    ae.requested_contexts = list(contexts)
    tls_args = None
    if node.tls is not None:
        tls_args = (node.tls.client_context(), node.host if node.tls.verify_hostname else "")
    connected: list[bool] = []
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        max_pdu=RECEIVE_MAX_PDU,
        ext_neg=ext_neg,
        evt_handlers=[*(handlers or []), (evt.EVT_CONN_OPEN, lambda _e: connected.append(True))],
        tls_args=tls_args,
    )
    if assoc.is_established:
        return assoc
    if not connected:
        raise NodeUnreachable(unreachable_message(node))
    if assoc.is_rejected:
        raise AssociationRejected(rejected_message(local, node))
    if assoc.is_aborted:
        raise AssociationRejected(aborted_message(local, node))
    raise NodeUnreachable(silent_message(node))


def unreachable_message(node: RemoteNode) -> str:
    return (
        f"node {node.describe()} is unreachable: nothing accepts connections at "
        f"{node.host}:{node.port}; check host and port in the settings and that the PACS runs"
    )


def rejected_message(local: LocalNode, node: RemoteNode) -> str:
    return (
        f"node {node.describe()} rejected the association from {local.ae_title!r}: "
        f"on the PACS, register AE title {local.ae_title!r} (host of this workstation, "
        f"port {local.port}) as a known DICOM node, and check that its own AE title is "
        f"{node.ae_title!r}"
    )


def aborted_message(local: LocalNode, node: RemoteNode) -> str:
    return (
        f"node {node.describe()} aborted the association from {local.ae_title!r}: "
        "it may not accept our AE title or our proposed services; check the PACS log"
    )


def silent_message(node: RemoteNode) -> str:
    return (
        f"node {node.describe()} accepted the connection but did not answer the association "
        f"request within {ACSE_TIMEOUT_S:.0f} s; check that {node.host}:{node.port} is a DICOM port"
    )


def local_address(assoc: Association) -> str:
    """The IP address the peer sees us at (for 'register host X' advice)."""
    try:
        sock = assoc.dul.socket.socket if assoc.dul.socket is not None else None
        if sock is None:
            return "this workstation's address"
        return str(sock.getsockname()[0])
    except (AttributeError, OSError):
        return "this workstation's address"
