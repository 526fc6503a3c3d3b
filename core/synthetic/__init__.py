"""Qt-free synthetic data generators: chest CT phantoms and endoscopy frames, written as DICOM.

Used by the demo, by the tests and to train models; every generator is deterministic per seed.
"""
