"""Key Object Selection (title DCM 113000 "Of Interest"): the key images of a review.

Key images are the CT slice nearest each nodule's centre and the high-risk endoscopy frames,
for findings the reader did not reject. Never titled 113001 "Rejected for Quality Reasons":
that is an IHE IOCM instruction to hide the images, not a reader's disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from core.findings import Finding, ReviewStatus
from core.reports.measurement_groups import SourceImages

KOS_SERIES_NUMBER = 903
OF_INTEREST = codes.DCM.OfInterest  # (113000, DCM)


def key_images(
    findings: Sequence[Finding], images: SourceImages, *, min_frame_probability: float
) -> list[pydicom.Dataset]:
    """Referenced images in finding order, each once."""
    chosen: dict[str, pydicom.Dataset] = {}
    for f in findings:
        if f.status is ReviewStatus.REJECTED:
            continue
        if f.center_mm is not None:
            ds = images.nearest_slice(f.center_mm)
        elif f.sop_instance_uid is not None and f.probability >= min_frame_probability:
            ds = images.get(f.sop_instance_uid)
        else:
            continue
        chosen.setdefault(str(ds.SOPInstanceUID), ds)
    return list(chosen.values())


def build_kos(
    findings: Sequence[Finding],
    *,
    source_images: Sequence[pydicom.Dataset],
    reader_name: str | None = None,
    device_uid: str | None = None,
    device_name: str = "Loupe",
    manufacturer: str = "Loupe",
    description: str = "Key images of the AI findings kept by the reader",
    min_frame_probability: float = 0.5,
    series_number: int = KOS_SERIES_NUMBER,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.ko.KeyObjectSelectionDocument:
    """A KOS "Of Interest" referencing the key images; the reader as person observer when
    given, else Loupe as device observer."""
    images = SourceImages(source_images)
    keys = key_images(findings, images, min_frame_probability=min_frame_probability)
    if not keys:
        raise ValueError("no key image: every finding was rejected or below the threshold")
    person = device = None
    if reader_name is not None:
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=reader_name
            ),
        )
    else:
        device = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=device_uid or hd.UID(), name=device_name, manufacturer_name=manufacturer
            ),
        )
    content = hd.ko.KeyObjectSelection(
        document_title=OF_INTEREST,
        referenced_objects=keys,
        observer_person_context=person,
        observer_device_context=device,
        description=description,
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=keys,
        content=content,
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
    )
