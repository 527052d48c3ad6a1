"""The walker's optional C loop over plain data opcodes (`_fastwalk.c`)."""

from collections.abc import Iterator
from typing import Any

OPCODES: dict[str, int]

def run(
    data: Any,
    pos: int,
    limit: int,
    start: int,
    stack: list[Any],
    marks: list[int],
    vals: Any,
    sparse: dict[int, int],
    memo: Any,
    steps: Iterator[None],
    counted: type,
    /,
) -> tuple[int, int]: ...
