"""DICOM report objects built from findings and the reader's review state (issue 5).

- `ai_sr.build_ai_sr`: the AI's findings, TID 1500 Comprehensive 3D SR
- `review_sr.build_review_sr`: the reader's verified review superseding the AI SR
- `lung_rads.suggest_lung_rads`: Lung-RADS v2022 baseline category
- `kos.build_kos`, `seg.build_nodule_seg`, `pmap.build_probability_map`: KOS, SEG, Parametric Map
- `read.read_findings`: TID 1500 SRs read back (Loupe's and other producers')
Codes: `codes.py` and CODES.md.
"""
