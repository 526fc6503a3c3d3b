"""The study browser's archive and network services (viewers.study_browser.StudyServices):
the local archive, C-FIND and retrieve, given to the widget as callables so that `viewers`
imports no networking and the same services can be driven without a window."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dicom_net.archive import LocalArchive
from dicom_net.nodes import LocalNode, RemoteNode
from dicom_net.query import FindQuery, find
from dicom_net.retrieve import RetrieveResult, retrieve


class ArchiveStudyServices:
    def __init__(self, archive: LocalArchive, local: LocalNode, nodes: tuple[RemoteNode, ...]):
        self.archive = archive
        self.local = local
        self._nodes = {n.name: n for n in nodes}
        self.ingest: Any = None  # the workstation's StoreIngest, once its receiver runs

    def studies(self) -> list[Any]:
        return list(self.archive.studies())

    def series(self, study_uid: str) -> list[Any]:
        return list(self.archive.series(study_uid))

    def middle_image(self, series_uid: str) -> str | None:
        instances = self.archive.instances(series_instance_uid=series_uid)
        return str(instances[len(instances) // 2].path) if instances else None

    def nodes(self) -> list[tuple[str, str]]:
        return [(n.name, f"{n.name} ({n.ae_title})") for n in self._nodes.values()]

    def describe_node(self, name: str) -> str:
        return self._nodes[name].describe()

    def search(self, node: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        query = FindQuery(level="study", **filters)  # ValueError names a bad filter
        return find(self.local, self._nodes[node], query)

    def retrieve(
        self,
        node: str,
        study_uid: str,
        cancel: threading.Event,
        progress: Callable[[Any], None],
    ) -> RetrieveResult:
        return retrieve(
            self.local,
            self._nodes[node],
            self.archive,
            study_instance_uid=study_uid,
            cancel=cancel,
            on_progress=progress,
            ingest=self.ingest,
        )
