"""mammo-review as a node on the hospital network (Qt-free).

`dicomweb` (QIDO-RS, WADO-RS, STOW-RS with dicomweb-client), `dimse` (C-ECHO, C-FIND, C-GET,
C-MOVE, C-STORE with pynetdicom), `listener` (a Storage SCP a PACS can push to), `cache` (retrieved
instances on disk, keyed by SOPInstanceUID), `results` (predictions as DICOM SR and SEG with
highdicom, marked research use), `cli` (``python -m inference pacs ...``). Every error raised on
purpose is a `inference.pacs.errors.PacsError`.
"""
