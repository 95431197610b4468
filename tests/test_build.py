"""The compiled core as built by default: the shared object carries no debug
information (setup.py compiles it with ``-g0`` unless a debugging switch asks
for it), so the wheel ships the code only.

Linux only: the sections are read from the ELF file, with no tool needed.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads ELF sections"),
]

# The switches that keep debug information (setup.py): a build made with one
# of them is tested with it set, or recognised from the file below.
DEBUG_SWITCHES = ("LIVEKIT_EVENTS_DEBUG", "LIVEKIT_EVENTS_SANITIZE", "LIVEKIT_EVENTS_CYTHON_TRACE")


def elf_section_names(path: str) -> list[str]:
    """The section names of an ELF file (32/64-bit, either byte order)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    wide = data[4] == 2  # ELFCLASS64
    order = "<" if data[5] == 1 else ">"  # ELFDATA2LSB
    if wide:
        (shoff,) = struct.unpack_from(order + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A)
        header = order + "IIQQQQIIQQ"  # name, type, flags, addr, offset, size, ...
    else:
        (shoff,) = struct.unpack_from(order + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x2E)
        header = order + "IIIIIIIIII"
    sections = [struct.unpack_from(header, data, shoff + i * shentsize) for i in range(shnum)]
    strings_at = sections[shstrndx][4]
    return [
        data[strings_at + s[0] : data.index(b"\0", strings_at + s[0])].decode() for s in sections
    ]


def test_compiled_core_carries_no_debug_information() -> None:
    switches = [name for name in DEBUG_SWITCHES if os.environ.get(name)]
    if switches:
        pytest.skip(f"{', '.join(switches)} set: debug information is kept")
    import livekit_events._core_c as core_c  # the extension itself, by name

    path = core_c.__file__
    assert path is not None
    names = elf_section_names(path)
    assert ".text" in names  # (the reader read the section table)
    with open(path, "rb") as f:
        content = f.read()
    if ".debug_macro" in names or b"__asan_init" in content or b"__ubsan_handle" in content:
        pytest.skip("built with LIVEKIT_EVENTS_DEBUG or LIVEKIT_EVENTS_SANITIZE")
    debug = [name for name in names if name.startswith((".debug_", ".zdebug_"))]
    assert not debug, (
        f"{os.path.basename(path)} carries debug information ({', '.join(debug)}); "
        f"if it was built with {' or '.join(DEBUG_SWITCHES)}, set it when running the tests too"
    )
