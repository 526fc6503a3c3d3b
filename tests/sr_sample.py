"""A small TID 1500 Comprehensive 3D SR for transport tests (the report issue builds its own)."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes


def make_3d_sr(ct_path: Path, out: Path) -> Path:
    src = pydicom.dcmread(ct_path)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="Loupe test device"
        ),
    )
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="nodule 1"),
        referenced_volume_surface=hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.array([[10.0, 20.0, 30.0]]),
            frame_of_reference_uid=src.FrameOfReferenceUID,
            source_images=[hd.sr.SourceImageForSegmentation(src.SOPClassUID, src.SOPInstanceUID)],
        ),
        finding_type=codes.SCT.Nodule,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
        measurements=[
            hd.sr.Measurement(name=codes.SCT.Diameter, value=8.0, unit=codes.UCUM.Millimeter)
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[src],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Loupe",
    )
    sr.save_as(out)
    return out
