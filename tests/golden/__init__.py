"""The golden replay set: CLI runs recorded from the pre-redesign code, replayed bit for bit.

``cases.py`` says what runs, ``replay.py`` runs a case and reads its run folders,
``record.py`` writes ``expected.json`` and ``weights/`` from a chosen source tree, and
``tests/test_golden.py`` replays every case against the code under test.
"""
