"""Receive-path levers measured by bench/move_throughput.py (patches live in this process only).

Each variant is a context manager factory taking the series' SOP Instance UIDs. "current" is
the code as it is; the others patch pynetdicom or dicom_net functions for the duration of one
run, so a lever can be measured before anyone edits the module it belongs to:

- ingest-pydicom: StoreIngest as before the one-pass header (encoded_dataset + pydicom x2)
- trace: prints where the wall time of each C-STORE goes on the receiving association
- parallelK: retrieve()'s series C-MOVE split into K IMAGE-level C-MOVEs (lists of SOP
  Instance UIDs, which Orthanc accepts) on K parallel associations
- archive-lean: LocalArchive.store_bytes without pathlib/uuid4 overhead (same files and rows)
- pynetdicom-recv, switch-interval: small pynetdicom/interpreter knobs
- lean-scp: the storage SCP's data path replaced by bench/lean_scp.py (same StoreIngest)
- lean-move: retrieve()'s C-MOVE done by bench/lean_scp.lean_move (responses read with struct)
- combinations joined with "+"
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from pynetdicom.dul import DULServiceProvider

from dicom_net.ingest import StoreIngest

Patch = Callable[[tuple[str, ...]], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def _nothing(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    yield


# -- trace: where the wall time of one C-STORE goes on the receiving association --------------
TRACE: dict[int, list[tuple[float, str, int]]] = defaultdict(list)


@contextlib.contextmanager
def _trace(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    TRACE.clear()
    decode, send, call = (
        DULServiceProvider._decode_pdu,
        DULServiceProvider._send,
        StoreIngest.__call__,
    )

    def t_decode(self: Any, bytestream: bytearray) -> Any:
        TRACE[id(self)].append((time.perf_counter(), f"recv{bytestream[0]}", len(bytestream)))
        return decode(self, bytestream)

    def t_send(self: Any, pdu: Any) -> None:
        send(self, pdu)
        TRACE[id(self)].append((time.perf_counter(), f"sent{pdu.pdu_type}", 0))

    def t_call(self: Any, event: Any) -> int:
        key = id(event.assoc.dul)
        TRACE[key].append((time.perf_counter(), "h0", 0))
        try:
            return call(self, event)
        finally:
            TRACE[key].append((time.perf_counter(), "h1", 0))

    with (
        _patched(DULServiceProvider, "_decode_pdu", t_decode),
        _patched(DULServiceProvider, "_send", t_send),
        _patched(StoreIngest, "__call__", t_call),
    ):
        yield
    report_trace()


def report_trace() -> None:
    """Per C-STORE on the acceptor side: gaps between the recorded points, medians in ms."""
    import statistics

    for key, ev in TRACE.items():
        if not any(e[1] == "h0" for e in ev):
            continue
        phases: dict[str, list[float]] = defaultdict(list)
        pdus_per_store: list[int] = []
        pdu_sizes: list[int] = []
        last_rsp: float | None = None
        first: float | None = None
        last_pdu = h0 = h1 = 0.0
        n = 0
        for t, kind, size in ev:
            if kind == "recv4":
                if first is None:
                    first = t
                    if last_rsp is not None:
                        phases["rsp sent -> next request's first PDU (peer)"].append(t - last_rsp)
                    n = 0
                n += 1
                pdu_sizes.append(size)
                last_pdu = t
            elif kind == "h0":
                h0 = t
                if first is not None:
                    phases["first PDU -> last PDU (receive)"].append(last_pdu - first)
                phases["last PDU -> handler start (queue/poll)"].append(t - last_pdu)
                pdus_per_store.append(n)
            elif kind == "h1":
                h1 = t
                phases["handler (StoreIngest)"].append(h1 - h0)
            elif kind == "sent4" and first is not None:
                phases["handler end -> rsp sent (encode/poll)"].append(t - h1)
                phases["cycle"].append(t - first)
                last_rsp = t
                first = None
        print(
            f"  association {key:x}: {len(pdus_per_store)} stores, PDUs/store median "
            f"{statistics.median(pdus_per_store) if pdus_per_store else 0}, PDU bytes median "
            f"{statistics.median(pdu_sizes) if pdu_sizes else 0}"
        )
        for name, xs in phases.items():
            print(
                f"    {name:<48} median {1000 * statistics.median(xs):6.3f} ms  "
                f"sum {sum(xs):6.3f} s"
            )


# -- parallel: split one series-level C-MOVE into K instance-level C-MOVEs on K associations --
def _merge(outs: list[Any]) -> Any:
    """One _Outcome for K partial moves: counts add up, the worst final status wins."""
    import dicom_net.retrieve as r

    merged = r._Outcome()
    for o in outs:
        merged.progress.completed += o.progress.completed
        merged.progress.failed += o.progress.failed
        merged.progress.warning += o.progress.warning
        merged.cancelled |= o.cancelled
        merged.connection_lost |= o.connection_lost
        if o.final_status not in (None, 0x0000) and merged.final_status in (None, 0x0000):
            merged.final_status, merged.error_comment = o.final_status, o.error_comment
        elif merged.final_status is None:
            merged.final_status = o.final_status
    merged.progress.remaining = 0
    return merged


def parallel_move(k: int) -> Patch:
    @contextlib.contextmanager
    def patch(sop_uids: tuple[str, ...]) -> Iterator[None]:
        import dicom_net.retrieve as r

        inner = r._move

        def split_move(
            local: Any, node: Any, identifier: Any, cancel: Any, on_progress: Any
        ) -> tuple[Any, str]:
            if identifier.QueryRetrieveLevel != "SERIES":
                return inner(local, node, identifier, cancel, on_progress)
            # retrieve() knows the UIDs from its C-FIND (`wanted`); the bench knows them too.
            chunks = [list(sop_uids[i::k]) for i in range(k)]
            results: list[Any] = [None] * k
            errors: list[BaseException] = []

            def one(i: int) -> None:
                try:
                    ident = r._retrieve_identifier(
                        identifier.StudyInstanceUID, identifier.SeriesInstanceUID, chunks[i]
                    )
                    results[i] = inner(local, node, ident, cancel, None)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            return _merge([o for o, _ in results]), results[0][1]

        with _patched(r, "_move", split_move):
            yield

    return patch


@contextlib.contextmanager
def _ingest_pydicom(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    """The ingest path before the one-pass header: encoded_dataset() + pydicom parse twice."""
    import dicom_net.ingest as ingest

    def part10(event: Any) -> bytes:
        return bytes(event.encoded_dataset(include_meta=True))

    with _patched(ingest, "_fast_header", lambda _data: None), _patched(ingest, "_part10", part10):
        yield


# -- lean-scp: StorageServer's listener replaced by bench/lean_scp.py (same StoreIngest) -------
@contextlib.contextmanager
def _lean_scp(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    from lean_scp import LeanStorageServer

    from dicom_net.ae import make_ae
    from dicom_net.contexts import ACCEPTED_TRANSFER_SYNTAXES, VERIFICATION, storage_scp_contexts
    from dicom_net.storage_server import StorageServer

    def start(self: Any) -> None:
        ae = make_ae(self.local)
        for cx in storage_scp_contexts():
            ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax)
        ae.add_supported_context(VERIFICATION, list(ACCEPTED_TRANSFER_SYNTAXES[:2]))
        self._lean = LeanStorageServer(
            self.ingest,
            ae=ae,
            bind=self.local.bind,
            port=self.local.port,
            allowed_callers=self.local.allowed_callers,
        )
        self._lean.start()

    def stop(self: Any) -> None:
        lean = getattr(self, "_lean", None)
        if lean is not None:
            lean.stop()
            self._lean = None

    with _patched(StorageServer, "start", start), _patched(StorageServer, "stop", stop):
        yield


# -- lean-move: retrieve()'s _move done by bench/lean_scp.lean_move (struct, no pydicom) -------
@contextlib.contextmanager
def _lean_move(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    from lean_scp import lean_move

    import dicom_net.retrieve as r

    def move(
        local: Any, node: Any, identifier: Any, cancel: Any, on_progress: Any
    ) -> tuple[Any, str]:
        final, counts, host_seen = lean_move(
            calling_ae=local.ae_title,
            called_ae=node.ae_title,
            host=node.host,
            port=node.port,
            destination_ae=local.ae_title,
            identifier=identifier,
            model=r.STUDY_ROOT_MOVE,
        )
        out = r._Outcome()
        out.final_status = final
        out.connection_lost = final is None
        out.progress.completed = counts.get("completed", 0)
        out.progress.failed = counts.get("failed", 0)
        out.progress.warning = counts.get("warning", 0)
        out.progress.remaining = counts.get("remaining", 0)
        return out, host_seen

    with _patched(r, "_move", move):
        yield


# -- archive-lean: LocalArchive.store_bytes without pathlib/uuid4 overhead (same files, rows) --
@contextlib.contextmanager
def _archive_lean(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    import itertools
    import os
    import secrets
    from pathlib import Path

    from dicom_net.archive import LocalArchive, StoredInstance, file_name_for
    from dicom_net.errors import ArchiveError
    from dicom_net.header import read_header

    counter = itertools.count()
    prefix = secrets.token_hex(6)

    def store_bytes(
        self: Any,
        data: bytes,
        *,
        header: Any = None,
        source_ae: str | None = None,
        source_node: str | None = None,
        source: str = "<network>",
    ) -> Any:
        if header is None:
            header = read_header(data, source=source)
        rel = file_name_for(header.sop_instance_uid)  # "ab/cd/<40 hex>.dcm": cannot escape
        files = str(self.files_dir)
        parent = rel[:5]
        if parent not in self._made_dirs:
            os.makedirs(os.path.join(files, parent), exist_ok=True)
            with self._dirs_lock:
                self._made_dirs.add(parent)
        final = os.path.join(files, rel)
        tmp = os.path.join(str(self.incoming_dir), f"{prefix}-{next(counter)}.part")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ArchiveError(f"{source}: cannot write to {self.files_dir} ({exc})") from exc
        path = Path(final)
        replaced = self._index(header, path, len(data), source_ae, source_node)
        return StoredInstance(header=header, path=path, replaced=replaced)

    with _patched(LocalArchive, "store_bytes", store_bytes):
        yield


# -- pynetdicom knobs ---------------------------------------------------------------------------
@contextlib.contextmanager
def _pynetdicom_recv(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    """AssociationSocket.recv reading straight into one buffer (not 4 KiB at a time)."""
    from pynetdicom.transport import AssociationSocket

    def recv(self: Any, nr_bytes: int) -> bytearray:
        buf = bytearray(nr_bytes)
        view = memoryview(buf)
        got = 0
        while got < nr_bytes:
            k = self.socket.recv_into(view[got:], nr_bytes - got)
            if not k:
                del view
                return buf[:got]
            got += k
        return buf

    with _patched(AssociationSocket, "recv", recv):
        yield


@contextlib.contextmanager
def _switch_interval(_sop_uids: tuple[str, ...]) -> Iterator[None]:
    """Hand the GIL over sooner (default 5 ms)."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _combine(*patches: Patch) -> Patch:
    @contextlib.contextmanager
    def patch(sop_uids: tuple[str, ...]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p(sop_uids))
            yield

    return patch


VARIANTS: dict[str, Patch] = {
    "archive-lean": _archive_lean,
    "pynetdicom-recv": _pynetdicom_recv,
    "switch-interval": _switch_interval,
    "lean-scp": _lean_scp,
    **{
        f"lean-scp+lean-move+parallel{k}+archive-lean": _combine(
            _lean_scp, _lean_move, parallel_move(k) if k > 1 else _nothing, _archive_lean
        )
        for k in (1, 2, 3)
    },
    "lean-move": _lean_move,
    "lean-scp+lean-move": _combine(_lean_scp, _lean_move),
    **{
        f"lean-scp+lean-move+parallel{k}": _combine(_lean_scp, _lean_move, parallel_move(k))
        for k in (2, 3, 4)
    },
    **{f"lean-scp+parallel{k}": _combine(_lean_scp, parallel_move(k)) for k in (2, 3, 4)},
    "current": _nothing,
    "ingest-pydicom": _ingest_pydicom,
    "trace": _trace,
    **{f"parallel{k}": parallel_move(k) for k in (2, 3, 4, 6)},
}

_lock = threading.Lock()


@contextlib.contextmanager
def apply(name: str, sop_uids: tuple[str, ...]) -> Iterator[None]:
    with _lock, VARIANTS[name](sop_uids):
        yield
