"""The AI's findings as a TID 1500 Comprehensive 3D SR, as the model produced them."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from core.findings import Finding
from core.reports import codes as c
from core.reports.measurement_groups import GroupOptions, SourceImages, groups_for, procedure_for

AI_SR_SERIES_NUMBER = 901


def device_observer(
    *, device_uid: str, model_name: str, manufacturer: str, model_version: str
) -> hd.sr.ObserverContext:
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid,
            name=model_name[:64],
            manufacturer_name=manufacturer,
            model_name=f"{model_name} {model_version}"[:64],
        ),
    )


def build_ai_sr(
    findings: Sequence[Finding],
    *,
    source_images: Sequence[pydicom.Dataset],
    model_id: str,
    model_version: str,
    model_name: str,
    manufacturer: str = "Loupe",
    series_number: int = AI_SR_SERIES_NUMBER,
    instance_number: int = 1,
    device_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    operating_point: tuple[str, float] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """A Comprehensive 3D SR (TID 1500) with one measurement group per AI finding.

    The device observer is the model (device UID generated unless given); each group names
    the algorithm (TID 4019: model id and version) and keeps the finding's Tracking UID.
    `source_images` are the image headers, at least those the findings reference.
    `operating_point` (name, threshold) is recorded as the algorithm's parameters (TID 4019
    Algorithm Parameters) of every group: which findings the reader was shown.
    """
    if not findings:
        raise ValueError("findings is empty: TID 1500 needs at least one measurement group")
    images = SourceImages(source_images)
    parameters: tuple[str, ...] = ()
    if operating_point is not None:
        name, threshold = operating_point
        parameters = (f"operating point: {name}", f"threshold: p >= {threshold:.4g}")
    options = GroupOptions(
        manufacturer=manufacturer,
        with_status=False,
        with_comment=False,
        algorithm_parameters=parameters,
    )
    context = hd.sr.ObservationContext(
        observer_device_context=device_observer(
            device_uid=device_uid or hd.UID(),
            model_name=model_name,
            manufacturer=manufacturer,
            model_version=model_version,
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=procedure_for(findings),
        imaging_measurements=groups_for(findings, images, options),
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=images.datasets,
        content=report[0],
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        is_complete=True,
        series_description=f"AI results {model_id} {model_version}"[:64],
    )
    sr.CodingSchemeIdentificationSequence = [c.coding_scheme_identification()]
    return sr
