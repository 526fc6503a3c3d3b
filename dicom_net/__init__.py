"""Loupe: dicom_net."""
