"""The symbolic pickle machine: an opcode table and a walker that mirrors CPython's
unpickler without importing or calling anything.

Shared by the locator (`safeload._formats`, which must know where a pickle
ends) and the scanner (which judges what the walk found).
"""
